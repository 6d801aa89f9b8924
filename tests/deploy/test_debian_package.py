"""The Debian package (`make deb`, scripts/build-deb.sh; issue 19, item 1).

Everywhere: the package is built from a wheelhouse of this machine's wheels (no index, as
the offline-install test) and its contents are checked: the venv at /opt/chenxing/venv-VERSION
with no staging path left in any file, the link, the conffile, the unit, the docs, the
maintainer scripts; the unpacked venv runs ``validate`` and ``config sample``.

As root (CI runs as root on a throwaway machine): installed, configured, ``validate``,
``check`` and ``demo`` run as the service user, upgraded (config and spool kept, the venv
switched), removed (config and spool kept) and purged (both gone). Where systemd runs, the
service is started, restarted by the upgrade and stopped by the removal. Not as root, that
test says it did not run and why (a skip with its reason, never a silent pass); it neither
replaces a real installation of chenxing-edge on the machine nor leaves a user behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import grp
import marshal
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli.config_init_cmd import packaged_text
from gateway.northbound.message import OutboundMessage
from gateway.northbound.spool import DiskSpool, SpoolLimits
from hil.broker import MqttBroker
from tests.integration.installed_wheels import OfflineWheelhouse
from tests.waiting import wait_until

#: each runs the demo of the whole line for a fixed time: alone, after the parallel phase
pytestmark = [pytest.mark.slow, pytest.mark.needs_index, pytest.mark.serial]

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "chenxing-edge"
#: test builds carry this in their version: a leftover of an interrupted run may be purged
TEST_MARK = "+pkgtest"
CONFIG = Path("/etc/chenxing/gateway.yaml")
STATE = Path("/var/lib/chenxing")
ENABLED = Path("/etc/systemd/system/multi-user.target.wants/chenxing-gateway.service")


@dataclass(frozen=True, slots=True)
class Built:
    deb: Path
    version: str


@pytest.fixture(scope="module")
def builder(offline_wheelhouse: OfflineWheelhouse) -> tuple[Path, Path]:
    """(a source copy, a wheelhouse built from it with this machine's wheels), shared with
    the offline-install test (tests/conftest.py); build-deb.sh writes only build/ and dist/
    of the source copy."""
    return offline_wheelhouse.src, offline_wheelhouse.wheels


def build(builder: tuple[Path, Path], version: str) -> Built:
    src, wheels = builder
    done = subprocess.run(
        [str(src / "scripts/build-deb.sh"), "--wheelhouse", str(wheels), "--version", version,
         "--out", str(src / "dist"), "--compress", "none"],
        capture_output=True, text=True, timeout=1200, cwd=src)  # fmt: skip
    assert done.returncode == 0, done.stderr
    deb = Path(done.stdout.strip().splitlines()[-1])
    assert deb.name == f"{PACKAGE}_{version}_{arch()}.deb" and deb.is_file()
    return Built(deb, version)


def arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def first(builder: tuple[Path, Path]) -> Built:
    return build(builder, f"{__version__}{TEST_MARK}.1")


def test_the_package_holds_a_relocated_venv_the_unit_the_config_and_the_docs(
    builder: tuple[Path, Path], first: Built, tmp_path: Path
) -> None:
    venv = f"/opt/chenxing/venv-{first.version}"
    info = subprocess.run(["dpkg-deb", "-f", str(first.deb)], capture_output=True, text=True,
                          check=True).stdout
    assert f"Version: {first.version}" in info and f"Architecture: {arch()}" in info
    assert re.search(r"^Depends: python3\.\d+, adduser$", info, re.M), info
    listing = subprocess.run(["dpkg-deb", "-c", str(first.deb)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert all(" root/root " in line for line in listing)  # built without fakeroot
    links = {m[1]: m[2] for line in listing if (m := re.search(r" \.(\S+) -> (\S+)$", line))}
    assert links["/opt/chenxing/venv"] == f"venv-{first.version}"
    assert links["/usr/bin/chenxing-gateway"] == "/opt/chenxing/venv/bin/chenxing-gateway"

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-R", str(first.deb), str(root)], check=True)
    control = root / "DEBIAN"
    assert (control / "conffiles").read_text() == f"{CONFIG}\n"
    for script in ("preinst", "postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK), script
        subprocess.run(["sh", "-n", str(control / script)], check=True)  # parses
    assert not (root / venv.lstrip("/") / "bin" / "pip").exists()  # dpkg owns the whole venv
    gateway_script = root / venv.lstrip("/") / "bin" / "chenxing-gateway"
    assert gateway_script.read_text().splitlines()[0] == f"#!{venv}/bin/python"
    stage = str(builder[0] / "build" / "deb" / "root")  # where build-deb.sh staged the tree
    staged = subprocess.run(["grep", "-rlF", stage, str(root)], capture_output=True, text=True)
    assert staged.stdout == "", f"files naming the staging root: {staged.stdout}"
    # bytecode compiled for the final paths: a traceback names /opt/chenxing/...
    pyc = next((root / venv.lstrip("/")).glob("lib/python3.*/site-packages/gateway/"
                                              "__pycache__/logsetup.cpython-*.pyc"))
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename.startswith(f"{venv}/lib/python3.")

    unit = (root / "lib/systemd/system/chenxing-gateway.service").read_text()
    assert unit == (REPO / "deploy" / "chenxing-gateway.service").read_text()
    # the unit's documentation is the package's copy of install.md
    assert "Documentation=file:/usr/share/doc/chenxing-edge/install.md\n" in unit
    assert (root / CONFIG.relative_to("/")).read_text() == packaged_text()
    doc = root / "usr/share/doc/chenxing-edge"
    for name in ("copyright", "README.md", "CHANGELOG.md", "install.md",
                 "examples/example.yaml", "examples/gateway.schema.json"):
        assert (doc / name).is_file(), name

    # the unpacked venv runs (its python is the system's, its packages its own)
    python = root / venv.lstrip("/") / "bin" / "python"
    run = [str(python), "-m", "gateway.cli.main"]
    refused = subprocess.run([*run, "validate", "-c", str(root / CONFIG.relative_to("/"))],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 1 and ":19: devices:" in refused.stderr
    sample = subprocess.run([*run, "config", "sample"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, check=True).stdout
    assert sample == (REPO / "config" / "example.yaml").read_text()


# --- installed: root only -----------------------------------------------------------------

def dpkg(*args: str) -> subprocess.CompletedProcess[str]:
    """dpkg ARGS, again while another dpkg or apt holds the lock (machines share CI runners)."""
    outcome: list[subprocess.CompletedProcess[str]] = []

    def attempt() -> bool:
        done = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        outcome[:] = [done]
        return done.returncode == 0 or "lock" not in done.stderr

    wait_until(attempt, f"dpkg {' '.join(args)} without a lock held", timeout=600, interval=1.0)
    return outcome[0]


def installed_version() -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", PACKAGE],
                          capture_output=True, text=True)  # fmt: skip
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) < 2 or fields[1][:2] in ("un", "pn"):
        return None  # never installed, or purged
    return fields[0]


def as_service_user(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "chenxing", "--", *args], capture_output=True,
                          text=True, timeout=timeout, cwd="/")  # fmt: skip


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()


def unit_state(prop: str) -> str:
    return subprocess.run(["systemctl", "show", "-P", prop, "chenxing-gateway"],
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def machine_for_the_package() -> Iterator[None]:
    """Root, no chenxing-edge of anyone else's; one package test at a time; the machine as it
    was afterwards (the package purged, the user removed when this test made it)."""
    if os.geteuid() != 0:
        pytest.skip("not root: the package was built and its contents checked, but installing, "
                    "upgrading, removing and purging it need root (CI runs them as root)")
    with open("/run/lock/chenxing-edge-package-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run of this test waits here
        present = installed_version()
        if present is not None and TEST_MARK in present:
            dpkg("--purge", PACKAGE)  # left by an interrupted run of this test
        elif present is not None:
            pytest.skip(f"{PACKAGE} {present} is installed on this machine: the package test "
                        "would replace it (run it on a throwaway machine)")
        for path in (Path("/opt/chenxing"), CONFIG.parent, STATE):
            if path.exists():
                pytest.skip(f"{path} exists (an offline install?): the package test would "
                            "take it over (run it on a throwaway machine)")
        user_existed = _user_exists()
        try:
            yield
        finally:
            if installed_version() is not None:
                dpkg("--purge", PACKAGE)
            if not user_existed and _user_exists():
                subprocess.run(["deluser", "--system", "--quiet", "chenxing"], check=False)
                if _group_exists():
                    subprocess.run(["delgroup", "--system", "--quiet", "chenxing"], check=False)


def _user_exists() -> bool:
    try:
        pwd.getpwnam("chenxing")
    except KeyError:
        return False
    return True


def _group_exists() -> bool:
    try:
        grp.getgrnam("chenxing")
    except KeyError:
        return False
    return True


def configure(meter_port: int, broker: MqttBroker) -> str:
    """The installed config as an engineer edits it: one meter, the test's broker."""
    text = CONFIG.read_text()
    device = (
        "devices:\n"
        "  - name: meter-1\n"
        "    protocol: modbus_tcp\n"
        f"    host: 127.0.0.1\n    port: {meter_port}\n"
        "    poll_interval: 200ms\n"
        "    tags:\n"
        "      - {name: voltage, table: input, address: 0, type: float32, unit: V}\n"
    )
    text = re.sub(r"(?m)^devices: \[\].*\n", device, text)
    text = text.replace("    port: 1883", f"    port: {broker.port}")
    CONFIG.write_text(text)
    return text


def spool_one_message() -> None:
    """A message waiting in the spool, as a broker outage leaves it."""
    spool = DiskSpool(STATE / "spool.db", SpoolLimits(1 << 20, 3600.0))
    spool.put(OutboundMessage("c/v1/s/l/gw/data", b"x" * 10, "data", samples=1, seq=1))
    spool.close()
    for path in STATE.iterdir():
        shutil.chown(path, "chenxing", "chenxing")


async def test_install_configure_upgrade_remove_purge(
    builder: tuple[Path, Path], first: Built, machine_for_the_package: None,
    mosquitto: MqttBroker, waveform_meter: object,
) -> None:
    """The simulated meter answers on this event loop; the package's life runs in a thread."""
    meter_port = waveform_meter.port  # type: ignore[attr-defined]  # the fixture's simulator
    await asyncio.to_thread(package_life, builder, first, meter_port, mosquitto)


def package_life(builder: tuple[Path, Path], first: Built, meter_port: int,
                 mosquitto: MqttBroker) -> None:
    second = build(builder, f"{__version__}{TEST_MARK}.2")

    # install: user, state folder, conffile for the service's group, unit enabled, not started
    done = dpkg("-i", str(first.deb))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "enabled but not started: /etc/chenxing/gateway.yaml does not validate yet" \
        in done.stdout, done.stdout
    assert ENABLED.is_symlink()
    if systemd_runs():
        assert unit_state("ActiveState") == "inactive"
    conf = CONFIG.stat()
    assert stat.S_IMODE(conf.st_mode) == 0o640 and grp.getgrgid(conf.st_gid).gr_name == "chenxing"
    state = STATE.stat()
    assert pwd.getpwuid(state.st_uid).pw_name == "chenxing"
    assert stat.S_IMODE(state.st_mode) == 0o750
    assert os.readlink("/opt/chenxing/venv") == f"venv-{first.version}"

    # configured by the engineer: validate, check and the demo run as the service user
    edited = configure(meter_port, mosquitto)
    valid = as_service_user("chenxing-gateway", "validate")
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout == f"{CONFIG}: valid (1 device, 1 tag)\n"
    check = as_service_user("chenxing-gateway", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    demo = as_service_user("chenxing-gateway", "demo", "--duration",
                                   "12", "--plain", timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    spool_one_message()
    stats = as_service_user("chenxing-gateway", "spool", "stats")
    assert "messages   1 " in stats.stdout, stats.stdout + stats.stderr
    if systemd_runs():  # the hardened unit runs the gateway: READY reached, serial ports allowed
        subprocess.run(["systemctl", "start", "chenxing-gateway"], check=True, timeout=120)
        assert unit_state("ActiveState") == "active"
        pid_before = unit_state("MainPID")

    # upgrade: the config and the spool stay, the venv is switched, the old one removed
    done = dpkg("-i", str(second.deb))
    assert done.returncode == 0, done.stdout + done.stderr
    if systemd_runs():
        assert "chenxing-gateway.service restarted" in done.stdout, done.stdout
        assert unit_state("ActiveState") == "active" and unit_state("MainPID") != pid_before
    else:
        assert "is valid; systemd is not running here" in done.stdout, done.stdout
    assert os.readlink("/opt/chenxing/venv") == f"venv-{second.version}"
    assert sorted(os.listdir("/opt/chenxing")) == ["venv", f"venv-{second.version}"]
    assert CONFIG.read_text() == edited
    assert stat.S_IMODE(CONFIG.stat().st_mode) == 0o640
    stats = as_service_user("chenxing-gateway", "spool", "stats")
    assert "messages   1 " in stats.stdout, stats.stdout + stats.stderr

    # remove: the programs go; the config, the spool and the user stay
    done = dpkg("--remove", PACKAGE)
    assert done.returncode == 0, done.stdout + done.stderr
    if systemd_runs():
        assert unit_state("ActiveState") in ("inactive", "")
    assert not Path("/opt/chenxing").exists() and not Path("/usr/bin/chenxing-gateway").exists()
    assert CONFIG.read_text() == edited and (STATE / "spool.db").is_file()
    assert "deinstall ok config-files" in subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", PACKAGE], capture_output=True, text=True).stdout
    assert _user_exists()

    # purge: the config and the state go too, and the unit's enablement
    done = dpkg("--purge", PACKAGE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not CONFIG.parent.exists() and not STATE.exists()
    assert not ENABLED.is_symlink()
    overrides = subprocess.run(["dpkg-statoverride", "--list"], capture_output=True,
                               text=True).stdout
    assert str(CONFIG) not in overrides
    assert installed_version() is None
