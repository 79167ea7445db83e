metadata description = 'A StorageV2 account of the app: the host account (Functions host storage, work queues, deployment package) or the archive account (write-once call records), or both in one for small deployments.'

// Network: Flex Consumption without VNet integration reaches storage over the public endpoint
// from outbound addresses that are neither fixed nor listable, so an IP firewall cannot admit
// the app; public network access therefore stays enabled and access is controlled by identity:
// shared key (account keys, SAS) is off, every caller needs an Entra ID token and an RBAC role
// (rbac.bicep). For a private setup, add VNet integration and private endpoints (not done here).

@maxLength(24)
@description('Required. Name of the storage account (3-24 lower-case letters and digits).')
param name string

@description('Required. Region of the account.')
param location string

@description('Optional. Tags of every resource in this module.')
param tags { *: string } = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
@description('Optional. Redundancy. The Archive access tier needs LRS, GRS or RA-GRS.')
param skuName string = 'Standard_LRS'

@description('Optional. Queues to create up front, so that the app never needs the right to create queues.')
param queueNames string[] = []

@description('Optional. Plain private blob containers to create (for example the Flex Consumption deployment container).')
param containerNames string[] = []

@description('Optional. The archive container, with its retention and tiering, when this account holds the archive; null otherwise.')
param archive archiveContainerType?

@description('Optional. Blob versioning and soft delete of this account.')
param dataProtection dataProtectionType = {
  versioning: false
  blobSoftDeleteDays: 7
  containerSoftDeleteDays: 7
}

@description('Optional. Resource id of the Log Analytics workspace that receives the blob service\'s resource logs; empty = no diagnostic setting.')
param logAnalyticsWorkspaceId string = ''

@description('Optional. Blob resource log categories sent to the workspace. StorageRead logs every read and list, which costs the most and proves the least.')
param blobLogCategories blobLogCategoryType[] = [
  'StorageWrite'
  'StorageDelete'
]

var softDeleteOff = {
  enabled: false
}
var blobSoftDeleteOn = {
  enabled: true
  days: dataProtection.blobSoftDeleteDays
}
var containerSoftDeleteOn = {
  enabled: true
  days: dataProtection.containerSoftDeleteDays
}

var archiveName = archive.?name ?? ''
var immutabilityDays = archive.?immutabilityDays ?? 0
var immutabilityLocked = archive.?immutabilityLocked ?? false
var coolAfterDays = archive.?coolAfterDays ?? 0
var archiveAfterDays = archive.?archiveAfterDays ?? 0
var tierToCool = {
  tierToCool: {
    daysAfterModificationGreaterThan: coolAfterDays
  }
}
var tierToArchive = {
  tierToArchive: {
    daysAfterModificationGreaterThan: archiveAfterDays
  }
}
// Archive blobs are written once, so "modified" is "written"
var tieringActions = union(coolAfterDays > 0 ? tierToCool : {}, archiveAfterDays > 0 ? tierToArchive : {})

// Hardened StorageV2: no shared key, TLS 1.2, HTTPS only, no anonymous blob access, copies only
// between accounts of this tenant
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration has no fixed outbound IPs to allow; access is by Entra ID + RBAC only (shared key off)
  // checkov:skip=CKV_AZURE_59: same reason: the app reaches the account over its public endpoint; nothing is reachable without an Entra ID token and a role
  // checkov:skip=CKV_AZURE_206: redundancy is a parameter (LRS by default to keep cost low; choose GRS/GZRS for the archive of a production tenant)
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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: dataProtection.versioning
    deleteRetentionPolicy: dataProtection.blobSoftDeleteDays > 0 ? blobSoftDeleteOn : softDeleteOff
    containerDeleteRetentionPolicy: dataProtection.containerSoftDeleteDays > 0 ? containerSoftDeleteOn : softDeleteOff
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// One blob per (record id, version), written only if absent
resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(archiveName)) {
  parent: blobService
  name: empty(archiveName) ? 'unused' : archiveName
  properties: {
    publicAccess: 'None'
  }
}

// Time-based retention (container-level WORM), created unlocked. A locked policy cannot be
// written by a template at all (locking is a separate POST, and a locked policy only accepts
// "extend"), so with locked=true the azd postprovision hook creates, locks and extends it and
// this resource stays out of the deployment.
resource archiveImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (!empty(archiveName) && immutabilityDays > 0 && !immutabilityLocked) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: immutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (!empty(queueNames)) {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// Tiering works on immutable blobs too: every access tier supports immutable storage and Set
// Blob Tier is allowed under a retention policy (learn.microsoft.com/azure/storage/blobs/
// immutable-storage-overview#access-tiers). Nothing here ever deletes.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(archiveName) && !empty(tieringActions)) {
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
                '${archiveName}/'
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
}

// Who wrote, read or deleted which blob, with the caller's object id, kept in Log Analytics
// (table StorageBlobLogs) where the app's identity has no access
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId) && !empty(blobLogCategories)) {
  name: 'blob-audit-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      for category in blobLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

@description('Resource id of the storage account.')
output id string = storage.id

@description('Name of the storage account.')
output name string = storage.name

@description('Blob service endpoint, with a trailing slash.')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Queue service endpoint, with a trailing slash.')
output queueEndpoint string = storage.properties.primaryEndpoints.queue

// =============== //
//   Definitions   //
// =============== //

@export()
@description('The archive container and what protects and tiers it. Fields: name; immutabilityDays (time-based retention in days since each blob was written, 0 = none); immutabilityLocked (true = the policy is locked by the azd postprovision hook: it can never be shortened or removed); coolAfterDays and archiveAfterDays (lifecycle tiering, 0 = never).')
type archiveContainerType = {
  name: string
  immutabilityDays: int
  immutabilityLocked: bool
  coolAfterDays: int
  archiveAfterDays: int
}

@export()
@description('Blob versioning and soft delete. Fields: versioning; blobSoftDeleteDays and containerSoftDeleteDays (0 = off).')
type dataProtectionType = {
  versioning: bool
  blobSoftDeleteDays: int
  containerSoftDeleteDays: int
}

@export()
@description('A blob service resource log category (Azure Monitor, table StorageBlobLogs).')
type blobLogCategoryType = 'StorageRead' | 'StorageWrite' | 'StorageDelete'
