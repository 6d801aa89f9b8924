"""Exit codes of ``chenxing-gateway`` (documented in the README)."""

OK = 0  #: clean run, or clean shutdown on SIGTERM/SIGINT; validate: config valid
CONFIG_INVALID = 1  #: the configuration (or a secret it names) is invalid
USAGE = 2  #: wrong command-line usage (click's own code)
RUNTIME_FAILURE = 3  #: the gateway could not start or failed fatally (e.g. port in use)
DEMO_INCOMPLETE = 4  #: demo: telemetry from some configured device never arrived
CHECK_FAILED = 5  #: check: some device or the broker could not be reached or read
ROLLED_BACK = 6  #: firmware upload: the node returned on its old image
NOTHING_RECEIVED = 7  #: watch --once: no matching value arrived before the timeout
REFUSED = 8  #: users, audit, config: a change refused (name, password, version), store unreadable
#: config init, certs: the output file exists and --force was not given; nothing was written
FILE_EXISTS = 9
CHANGE_REFUSED = REFUSED  #: config rollback: the running gateway refused or rolled back the change
#: bundle verify: the gateway would refuse the bundle (the reason is printed)
BUNDLE_REFUSED = 10
