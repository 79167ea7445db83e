#!/bin/sh
# azd postprovision hook: lock the archive container's time-based retention policy when
# ARCHIVE_IMMUTABILITY_LOCKED=true, and do nothing otherwise.
#
# A template cannot do this: locking is a separate POST that needs the policy's ETag
# (learn.microsoft.com/rest/api/storagerp/blob-containers/lock-immutability-policy), and a
# locked policy accepts only "extend", so a redeployment that rewrote it would fail. main.bicep
# therefore leaves the policy to this script whenever a lock is asked for.
#
#   no policy or Unlocked -> set ARCHIVE_IMMUTABILITY_DAYS, then lock      (irreversible)
#   Locked                -> extend to ARCHIVE_IMMUTABILITY_DAYS if longer; never shorter
#
# Idempotent. Needs the Azure CLI (az), signed in as someone who may write the storage account
# (Owner, Contributor or Storage Account Contributor on it).
set -eu

locked=$(printf '%s' "${ARCHIVE_IMMUTABILITY_LOCKED:-false}" | tr '[:upper:]' '[:lower:]')
[ "$locked" = "true" ] || exit 0

# The template's default (main.bicep archiveImmutabilityDays) when the environment sets none
days=${ARCHIVE_IMMUTABILITY_DAYS:-365}
case $days in
  '' | *[!0-9]*)
    echo "ARCHIVE_IMMUTABILITY_DAYS must be a whole number of days, not '$days'" >&2
    exit 1
    ;;
esac
if [ "$days" -lt 1 ]; then
  echo "ARCHIVE_IMMUTABILITY_LOCKED=true needs ARCHIVE_IMMUTABILITY_DAYS of 1 or more" >&2
  exit 1
fi
if ! command -v az >/dev/null 2>&1; then
  echo "the Azure CLI (az) is needed to lock the archive's retention policy" >&2
  exit 1
fi

rg=${AZURE_RESOURCE_GROUP:?run through azd, which sets AZURE_RESOURCE_GROUP}
account=${ARCHIVE_STORAGE_ACCOUNT_NAME:?run through azd, which sets ARCHIVE_STORAGE_ACCOUNT_NAME}
container=${ARCHIVE_CONTAINER:?run through azd, which sets ARCHIVE_CONTAINER}
where="container $container of $account"

policy() {
  az storage container immutability-policy show -g "$rg" --account-name "$account" \
    -c "$container" --query "$1" -o tsv
}

# No policy yet reads as an empty state; any real failure shows again in the commands below
state=$(policy state 2>/dev/null || true)
if [ "$state" = "Locked" ]; then
  current=$(policy immutabilityPeriodSinceCreationInDays)
  if [ "$days" -gt "$current" ]; then
    az storage container immutability-policy extend -g "$rg" --account-name "$account" \
      -c "$container" --period "$days" --if-match "$(policy etag)" -o none
    echo "extended the locked retention policy on $where from $current to $days days"
  elif [ "$days" -lt "$current" ]; then
    echo "warning: the locked retention policy on $where keeps $current days;" \
      "a locked policy cannot be shortened, so ARCHIVE_IMMUTABILITY_DAYS=$days changes nothing" >&2
  fi
  exit 0
fi

az storage container immutability-policy create -g "$rg" --account-name "$account" \
  -c "$container" --period "$days" --allow-protected-append-writes false -o none
az storage container immutability-policy lock -g "$rg" --account-name "$account" \
  -c "$container" --if-match "$(policy etag)" -o none
echo "LOCKED the retention policy on $where at $days days: it can never be shortened or removed"
