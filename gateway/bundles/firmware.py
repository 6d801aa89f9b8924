"""Firmware images in bundles: where an image enters (the local API, the brain's command, the CLI).

:func:`unwrap_firmware` takes what was sent: a signed bundle is verified (kind
``firmware``, its version kept per device, the image checked by the device's firmware
capability and its header's version compared with the manifest's) and its one image
returned; a raw image passes only when the config does not require signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.bundles.manifest import Version
from gateway.bundles.verify import BundleVerifier, PayloadCheck, VerifiedBundle, looks_like_bundle
from gateway.errors import BundleRefused, ImageRefused

if TYPE_CHECKING:
    from drivers.firmware import FirmwareUpdates

KIND = "firmware"


def image_of(bundle: VerifiedBundle) -> bytes:
    """The one image a firmware bundle holds."""
    if len(bundle.files) != 1:
        raise BundleRefused("payload_mismatch", f"a firmware bundle holds exactly one image; "
                            f"this one has {len(bundle.files)} files")
    return next(iter(bundle.files.values()))


def image_check(updates: FirmwareUpdates) -> PayloadCheck:
    """The payload check of a firmware bundle for a device whose driver updates by
    ``updates``: one image, one the device takes, of the manifest's version."""
    def check(bundle: VerifiedBundle) -> None:
        image = image_of(bundle)
        try:
            checked = updates.check_image(image)
        except ImageRefused as exc:
            raise BundleRefused("payload_mismatch", f"{bundle.name}: {exc}") from None
        try:
            same = Version.parse(checked.version_text) == bundle.version
        except ValueError:
            same = checked.version_text == bundle.version.text
        if not same:
            raise BundleRefused("payload_mismatch", f"the image's header says version "
                                f"{checked.version_text}, the manifest {bundle.version}")
    return check


def unwrap_firmware(verifier: BundleVerifier, data: bytes, *, device: str,
                    updates: FirmwareUpdates, source: str,
                    ) -> tuple[bytes, VerifiedBundle | None]:
    """The image to send to ``device`` and the bundle it came in (None for a raw image);
    raise :class:`BundleRefused` (audited) for a bundle that fails verification, or a raw
    image where ``bundles.require_signed`` is set. Call it from a thread: the device's
    capability may import its libraries."""
    if looks_like_bundle(data):
        bundle = verifier.verify(data, kind=KIND, source=source, scope=device,
                                 check=image_check(updates))
        return image_of(bundle), bundle
    if verifier.trust.require_signed:
        raise verifier.refuse_unsigned(kind=KIND, source=source, what="the image")
    return data, None
