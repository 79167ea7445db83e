// The app's one storage account: Functions host storage (AzureWebJobsStorage), the work queue
// and its poison queue, the archive container, the analysis tables container and the Flex
// Consumption deployment container.
//
// Network: Flex Consumption without VNet integration reaches storage over the public endpoint
// from outbound addresses that are neither fixed nor listable, so an IP firewall cannot admit
// the app; public network access therefore stays enabled and access is controlled by identity:
// shared key (account keys, SAS) is off, every caller needs an Entra ID token and an RBAC role
// (rbac.bicep). For a private setup, add VNet integration and private endpoints (not done here).
param name string
param location string
param tags object = {}
param skuName string = 'Standard_LRS'
param archiveContainerName string
param analyticsContainerName string
param deploymentContainerName string
param queueNames array
@description('Container-level time-based retention (WORM) in days; 0 = none.')
param archiveImmutabilityDays int = 0
@description('Days after which archived blobs move to Cool; 0 = never.')
param archiveCoolAfterDays int = 0
@description('Days after which archived blobs move to Archive; 0 = never.')
param archiveArchiveAfterDays int = 0
param blobVersioningEnabled bool = false
param blobSoftDeleteDays int = 7
param containerSoftDeleteDays int = 7

var softDeleteOff = {
  enabled: false
}
var blobSoftDeleteOn = {
  enabled: true
  days: blobSoftDeleteDays
}
var containerSoftDeleteOn = {
  enabled: true
  days: containerSoftDeleteDays
}

// StorageV2 account, hardened: no shared key, TLS 1.2, HTTPS only, no anonymous blob access
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration has no fixed outbound IPs to allow; access is by Entra ID + RBAC only (shared key off)
  // checkov:skip=CKV_AZURE_59: same reason: the app reaches the account over its public endpoint; nothing is reachable without an Entra ID token and a role
  // checkov:skip=CKV_AZURE_206: redundancy is the storageSkuName parameter (LRS by default to keep cost low; choose GRS/GZRS for production)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    allowedCopyScope: 'AAD'
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    dnsEndpointType: 'Standard'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Blob service: versioning and soft delete as parameters
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: blobVersioningEnabled
    deleteRetentionPolicy: blobSoftDeleteDays > 0 ? blobSoftDeleteOn : softDeleteOff
    containerDeleteRetentionPolicy: containerSoftDeleteDays > 0 ? containerSoftDeleteOn : softDeleteOff
  }
}

// Archive container: one blob per (record id, version), written only if absent
resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Analysis tables container: Parquet derived from the archive, replaced on every rebuild (so no
// WORM policy and no lifecycle tiering). The identity's Storage Blob Data Owner on the account
// (host storage, rbac.bicep) already covers it.
resource analyticsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: analyticsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Optional time-based retention (WORM) on the archive container, created unlocked
resource archiveImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (archiveImmutabilityDays > 0) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: archiveImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

// Flex Consumption deployment package container (azd deploy uploads the zip here)
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Queue service holding the work queue and its poison queue
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The work queue (ids to archive) and <queue>-poison, created up front so the app never needs queue-create rights
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

var tierToCool = {
  tierToCool: {
    daysAfterModificationGreaterThan: archiveCoolAfterDays
  }
}
var tierToArchive = {
  tierToArchive: {
    daysAfterModificationGreaterThan: archiveArchiveAfterDays
  }
}
// Archive blobs are written once, so "modified" is "written"
var tieringActions = union(archiveCoolAfterDays > 0 ? tierToCool : {}, archiveArchiveAfterDays > 0 ? tierToArchive : {})

// Optional lifecycle rule moving archived records to Cool and/or Archive (archive container only)
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (archiveCoolAfterDays > 0 || archiveArchiveAfterDays > 0) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'archive-tiering'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${archiveContainerName}/'
              ]
            }
            actions: {
              baseBlob: tieringActions
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    archiveContainer
  ]
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
