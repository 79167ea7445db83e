#!/bin/sh
# azd predown hook: refuse `azd down` while the archive's delete lock is on (the default).
#
# Azure Resource Manager refuses to delete a resource group that holds a locked resource
# (learn.microsoft.com/azure/azure-resource-manager/management/lock-resources), so `azd down`
# would stop at the lock anyway, with a ScopeLocked error and nothing deleted. This says why
# before anything is attempted, and what to do: tearing down an environment that holds records
# is a deliberate act (infra/README.md, "Tear down").
#
# ARCHIVE_DELETE_LOCK=false (set before the last `azd provision`, so the lock is gone) lets it
# through. Needs nothing but sh.
set -eu

lock=$(printf '%s' "${ARCHIVE_DELETE_LOCK:-true}" | tr '[:upper:]' '[:lower:]')
[ "$lock" = "false" ] && exit 0

account=${ARCHIVE_STORAGE_ACCOUNT_NAME:-the archive account}
cat >&2 <<MESSAGE
azd down stopped: $account holds the call record archive and carries a CanNotDelete lock
(ARCHIVE_DELETE_LOCK, on by default); Azure would refuse to delete its resource group.
To keep the records, copy them out first (infra/README.md, "Tear down"). Then, deliberately:
  azd env set ARCHIVE_DELETE_LOCK false
  az lock delete -g "\$(azd env get-value AZURE_RESOURCE_GROUP)" -n archive-cannot-delete \\
    --resource "\$(azd env get-value ARCHIVE_STORAGE_ACCOUNT_NAME)" \\
    --resource-type Microsoft.Storage/storageAccounts
  azd down
MESSAGE
exit 1
