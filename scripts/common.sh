# Shared by the toybox backup scripts: settings, PATH, and the log/alert
# variables the tb tools read themselves (TB_LOG, TB_ALERT_CMD).
set -euo pipefail
TB_ENV=${TB_ENV:-@SYSCONFDIR@/default/toybox-backup}
if [ -r "$TB_ENV" ]; then
    # shellcheck disable=SC1090
    . "$TB_ENV"
fi
PATH=@BINDIR@:$PATH
TB_ROOT=${TB_ROOT:-/backup/toybox}
TB_LOG=${TB_LOG:-/var/log/toybox_backup.log}
TB_ALERT_CMD=${TB_ALERT_CMD:-}
export PATH TB_LOG
if [ -n "$TB_ALERT_CMD" ]; then export TB_ALERT_CMD; else unset TB_ALERT_CMD; fi
[ -z "${PGPASSWORD:-}" ] || export PGPASSWORD

# Run the pipeline `tb-check list DIR | tb-prune --keep-days N`: only
# called after a successful backup; pipefail makes a failed listing fail.
prune() {
    tb-check list "$1" | tb-prune --keep-days "$2"
}

# The container to stop for volume $1, from TB_VOLUME_STOP.
stop_for() {
    local pair
    for pair in ${TB_VOLUME_STOP:-}; do
        if [ "${pair%%=*}" = "$1" ]; then printf '%s\n' "${pair#*=}"; fi
    done
}
