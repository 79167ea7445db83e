metadata description = 'Role assignments of the app\'s managed identity, each role the smallest that covers what the code does, on the narrowest scope Azure allows for it; and the custom role that writes the archive without deleting.'

@description('Required. Object id of the managed identity\'s service principal.')
param principalId string

@description('Required. Name of the host storage account (AzureWebJobsStorage, queues, deployment package).')
param hostStorageAccountName string

@description('Required. Queues in the host account that the app sends to, receives from and peeks (the work queue and its poison queue).')
param queueNames string[]

@description('Required. Name of the account that holds the archive container (the host account when the archive shares it).')
param archiveStorageAccountName string

@description('Required. Name of the archive container.')
param archiveContainerName string

@description('Required. Name of the call-quality tables container, in the archive\'s account.')
param analyticsContainerName string

@description('Required. Name of the Key Vault.')
param keyVaultName string

@description('Required. Name of the Key Vault secret holding the Graph clientState.')
param clientStateSecretName string

@description('Optional. Name of the Key Vault secret holding the previous clientState during a rotation.')
param previousClientStateSecretName string = ''

@description('Optional. true while a clientState rotation is under way: the identity may then also read the previous-clientState secret.')
param rotationUnderWay bool = false

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

// Ids of Microsoft's built-in roles (learn.microsoft.com/azure/role-based-access-control/built-in-roles)
var builtInRoleNames = {
  'Storage Blob Data Owner': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  'Storage Blob Data Contributor': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  'Storage Queue Data Message Sender': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')
  'Storage Queue Data Message Processor': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '8a0f0c08-91a1-4084-bc3d-661d67233fed')
  'Storage Queue Data Reader': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '19e7f393-937e-4f77-808e-94535e297925')
  'Key Vault Secrets User': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  'Monitoring Metrics Publisher': subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
}

// What the archive writer does, and nothing more. Azure's table of the data action each REST
// operation needs (learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-
// directory#permissions-for-blob-service-operations):
//   Get Blob, Get Blob Properties, List Blobs       blobs/read
//   Put Blob                                        blobs/add/action (create a new blob) or
//                                                   blobs/write (create or replace)
//   Put Block, Put Block List                       blobs/write, and only blobs/write
// A record larger than one 4 MiB block is staged with Put Block and committed with Put Block
// List (If-None-Match: *), so add/action alone would refuse every large meeting: write stays,
// and with it add/action would add nothing (test_infra derives this set from the calls the
// archive writer makes).
// What it could do beyond creating, replacing a record, storage refuses: the archive container
// has a time-based retention policy by default, under which blobs "can be created and read, but
// not modified or deleted", and even after the interval "can be deleted but not overwritten"
// (learn.microsoft.com/azure/storage/blobs/immutable-storage-overview); versioning keeps any
// earlier content besides, and the code only ever writes with If-None-Match: *. The assignment's
// condition (below) takes Set Blob Tier out of blobs/write too.
// Deliberately absent: blobs/delete, blobs/deleteBlobVersion/action (previous versions stay),
// blobs/permanentDelete/action, tags, immutability-policy and container actions.
var archiveWriterDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
]

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName

  resource queueService 'queueServices' existing = {
    name: 'default'
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queueName in queueNames: {
    parent: hostStorage::queueService
    name: queueName
  }
]

resource archiveStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: archiveStorageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'
  }
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveStorage::blobService
  name: archiveContainerName
}

resource analyticsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveStorage::blobService
  name: analyticsContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName

  resource clientStateSecret 'secrets' existing = {
    name: clientStateSecretName
  }
}

resource previousClientStateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: empty(previousClientStateSecretName) ? '${clientStateSecretName}-previous' : previousClientStateSecretName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// No built-in role creates and reads blobs without deleting them (Storage Blob Data
// Contributor deletes). A custom role can only be made assignable at a management group,
// subscription or resource group (learn.microsoft.com/azure/role-based-access-control/
// role-definitions#assignablescopes): this one is assignable in this resource group alone and
// assigned on the archive container alone. Its name must be unique in the tenant.
// In the documented shape "(not this action) OR (an attribute)": Set Blob Tier is refused on the
// archive container, the assignment's only scope
// (learn.microsoft.com/azure/role-based-access-control/conditions-format)
var archiveWriterCondition = '((!(ActionMatches{\'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write\'} AND SubOperationMatches{\'Blob.Write.Tier\'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringNotEquals \'${archiveContainerName}\'))'

resource archiveWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'callrecord-archive-writer')
  properties: {
    roleName: 'Call record archive writer (${resourceGroup().name}, ${uniqueString(resourceGroup().id)})'
    description: 'Create and read blobs of the call record archive; no delete, no version delete, no policy changes.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: archiveWriterDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// The archive writer writes each record if absent and reads for existence checks, listings
// and health; it cannot delete a record, whatever the code does
resource archiveWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveContainer.id, principalId, archiveWriterRole.id)
  scope: archiveContainer
  properties: {
    roleDefinitionId: archiveWriterRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Archive writer: create and read call records, never delete'
    // blobs/write minus Set Blob Tier (suboperation Blob.Write.Tier): moving a record to the
    // Archive tier would make it unreadable for hours, and the lifecycle rule, not the app,
    // tiers (learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes)
    conditionVersion: '2.0'
    condition: archiveWriterCondition
  }
}

// The tables are derived data, replaced whole on every rebuild (rebuild_tables): the one
// container the app may overwrite and delete in, and only that container
resource analyticsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(analyticsContainer.id, principalId, builtInRoleNames['Storage Blob Data Contributor'])
  scope: analyticsContainer
  properties: {
    roleDefinitionId: builtInRoleNames['Storage Blob Data Contributor']
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Call-quality tables: rebuilt from the archive'
  }
}

// The Functions host (AzureWebJobsStorage) creates its containers, takes blob leases for timer
// singletons and keeps host keys, Flex Consumption reads the deployment package with this
// identity, and the app keeps its small state blobs here; Microsoft documents Owner as the
// minimum for host storage. When the archive shares this account, this role can delete
// records: only the retention policy protects them then (infra/README.md).
resource hostStorageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, builtInRoleNames['Storage Blob Data Owner'])
  scope: hostStorage
  properties: {
    roleDefinitionId: builtInRoleNames['Storage Blob Data Owner']
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (AzureWebJobsStorage): containers, leases, keys, deployment package, app state'
  }
}

// The webhook enqueues record ids, the archiver re-enqueues with a delay, the host moves
// failures to <queue>-poison, the CLI replays poison messages
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, builtInRoleNames['Storage Queue Data Message Sender'])
    scope: queues[i]
    properties: {
      roleDefinitionId: builtInRoleNames['Storage Queue Data Message Sender']
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Send messages to ${queueName}'
    }
  }
]

// The queue trigger receives and deletes messages; the CLI reads and removes poison messages
resource queueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, builtInRoleNames['Storage Queue Data Message Processor'])
    scope: queues[i]
    properties: {
      roleDefinitionId: builtInRoleNames['Storage Queue Data Message Processor']
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Receive and delete messages of ${queueName}'
    }
  }
]

// Queue properties and peek: the queue depth for scale decisions, health and CLI status
resource queueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, builtInRoleNames['Storage Queue Data Reader'])
    scope: queues[i]
    properties: {
      roleDefinitionId: builtInRoleNames['Storage Queue Data Reader']
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Peek and read the depth of ${queueName}'
    }
  }
]

// Resolves the GRAPH_CLIENT_STATE Key Vault reference; no other secret is readable
resource clientStateSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault::clientStateSecret.id, principalId, builtInRoleNames['Key Vault Secrets User'])
  scope: vault::clientStateSecret
  properties: {
    roleDefinitionId: builtInRoleNames['Key Vault Secrets User']
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Read the Graph clientState secret (Key Vault reference)'
  }
}

// During a rotation only: resolves the GRAPH_CLIENT_STATE_PREVIOUS Key Vault reference
resource previousClientStateSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (rotationUnderWay) {
  name: guid(previousClientStateSecret.id, principalId, builtInRoleNames['Key Vault Secrets User'])
  scope: previousClientStateSecret
  properties: {
    roleDefinitionId: builtInRoleNames['Key Vault Secrets User']
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Read the previous Graph clientState secret during a rotation (Key Vault reference)'
  }
}

// Telemetry with Entra ID auth, since the component's local (key) auth is off
resource appInsightsMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, builtInRoleNames['Monitoring Metrics Publisher'])
  scope: applicationInsights
  properties: {
    roleDefinitionId: builtInRoleNames['Monitoring Metrics Publisher']
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Publish telemetry to Application Insights with Entra ID authentication'
  }
}

@description('Resource id of the custom archive-writer role definition.')
output archiveWriterRoleId string = archiveWriterRole.id
