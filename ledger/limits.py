"""Every limit a user can set, with its default and its range: one statement each, for the flags, the
config file and the code that enforces them. Imports nothing, so `ledger --help` stays fast."""

DEFAULT_DEADLINE = 300.0  # seconds for one request, from connecting to the last byte of its body
MAX_TAGS = 100_000  # per repository, unless --max-tags says otherwise
DEFAULT_CONCURRENCY = 8
DEFAULT_RETRIES = 4

CONCURRENCY_RANGE = (1, 256)
RETRIES_RANGE = (0, 10)
RPS_RANGE = (0.1, 100_000)  # requests per second, per registry
DEADLINE_RANGE = (1, 86400)  # seconds for one request
MAX_TAGS_RANGE = (1, 10_000_000)

REFERRER_MODES = ("auto", "always", "never")  # when to ask the OCI referrers API

# Lists a registry controls, each bounded: past a cap what was read is used, what was cut is one errors row
# saying so, and the listing it cut removes nothing. A registry that lists the same 9,000 lying referrers
# for each of 120 digests is then about 100,000 small rows of work, not a million (issue 21).
MAX_REFERRERS = 1_000  # referrers followed per digest, unless --max-referrers says otherwise
MAX_REFERRERS_RANGE = (1, 100_000)
MAX_RUN_REFERRERS = 100_000  # referrers followed per registry in one run, unless --max-run-referrers says otherwise
MAX_RUN_REFERRERS_RANGE = (1, 10_000_000)
MAX_INDEX_CHILDREN = 1_000  # children of one index fetched and followed (its platforms rows keep them all)
MAX_PAGES = 1_000  # pages of one listing: catalog, tag list, referrers

# Notifications (ledger/notify.py), sent once a run is committed. A `watch` waits for them before its
# next run, and a cron `collect` before it exits: a bound short enough to keep either on its schedule.
NOTIFY_DEADLINE = 10.0  # seconds for every target of one run's notification together
NOTIFY_DEADLINE_RANGE = (1, 20)
NOTIFY_ITEMS = 20  # changes and errors listed in one notification; the rest are counted
NOTIFY_KINDS = ("added", "moved", "rollback", "updated", "removed", "new_images", "partial", "failed")
NOTIFY_ON = ("moved", "removed", "new_images", "failed")  # the default
