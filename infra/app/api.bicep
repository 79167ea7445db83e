// Flex Consumption plan (FC1) and the Function App (Linux, Python), with every app setting the
// code reads. Storage connections are identity-based (no connection strings, no keys); the
// Graph clientState is a Key Vault reference resolved with the user-assigned identity.
// Flex Consumption takes the runtime and the package location from functionAppConfig, so the
// WEBSITE_RUN_FROM_PACKAGE / FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION settings
// of other plans are not set.

@description('Required. Name of the Function App.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Region of the plan and the app.')
param location string

@description('Optional. Tags of the plan and the app.')
param tags { *: string } = {}

@description('Optional. azd service name (azure.yaml services.<name>), written to the azd-service-name tag.')
param serviceName string = 'api'

@allowed([
  '3.11'
])
@description('Optional. Python version of the Flex Consumption runtime; the one the Makefile and CI test with.')
param pythonVersion string = '3.11'

@minValue(1)
@maxValue(1000)
@description('Optional. Upper bound of Flex Consumption instances (also bounds the load on Graph).')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Optional. Memory of each instance, in MB.')
param instanceMemoryMB int = 512

@description('Required. Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Required. Client id of that identity (storage connections, Application Insights, DefaultAzureCredential).')
param identityClientId string

@description('Required. Blob endpoint of the host storage account (AzureWebJobsStorage, deployment package).')
param storageBlobEndpoint string

@description('Required. Queue endpoint of the host storage account (the work queues).')
param storageQueueEndpoint string

@description('Required. Blob endpoint of the account that holds the archive container (ARCHIVE_STORAGE).')
param archiveBlobEndpoint string

@description('Required. Container in the host account that Flex Consumption deploys the package from.')
param deploymentContainerName string

@description('Required. Name of the archive container (ARCHIVE_CONTAINER).')
param archiveContainerName string

@description('Required. Name of the call-quality tables container (ANALYTICS_CONTAINER), in the archive\'s account.')
param analyticsContainerName string

@description('Required. Name of the work queue (CALLRECORDS_QUEUE); the poison queue is its name plus -poison.')
param callrecordsQueueName string

@description('Required. Microsoft Graph root without the version (GRAPH_BASE_URL).')
param graphBaseUrl string

@description('Required. Versionless URI of the Key Vault secret holding the Graph clientState.')
param clientStateSecretUri string

@description('Optional. Versionless URI of the Key Vault secret holding the previous clientState while a rotation is under way; empty = no rotation, GRAPH_CLIENT_STATE_PREVIOUS stays empty.')
param previousClientStateSecretUri string = ''

@description('Optional. Resource id of the subnet (delegated to Microsoft.App/environments) the app integrates with; empty = no VNet integration.')
param virtualNetworkSubnetId string = ''

@minValue(0)
@maxValue(10)
@description('Optional. Always-ready instances of the HTTP functions (the webhooks and health): kept started, so Graph\'s deliveries never wait for a cold start. 0 = scale from zero.')
param alwaysReadyHttpInstances int = 1

@description('Required. Application Insights connection string (not a secret: ingestion needs an Entra ID token).')
param applicationInsightsConnectionString string

@minValue(1)
@description('Optional. Seconds before the first retry of a record Graph does not have yet (ARCHIVE_RETRY_BASE_SECONDS).')
param archiveRetryBaseSeconds int = 60

@minValue(1)
@description('Optional. Minutes a record may stay "not yet available" before it goes to poison (ARCHIVE_RETRY_WINDOW_MINUTES).')
param archiveRetryWindowMinutes int = 240
@description('Optional. Days the first PSTN / Direct Routing sync reads back (USAGE_LOGS_BACKFILL_DAYS).')
param usageLogsBackfillDays int = 90

@minValue(1024)
@description('Optional. Largest request body the Functions host accepts, in bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT; the host default is 100 MB). The webhooks accept 1 MiB (MAX_BODY_BYTES in shared/notifications.py), so a bigger body is refused by the host before it is read into memory.')
param requestBodySizeLimitBytes int = 1048576

// Flex Consumption plan: Linux, scale to zero, billed per execution (plus the always-ready
// instances of the HTTP group, alwaysReadyHttpInstances)
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy for Flex Consumption exists only in some regions; left off so the template deploys in every Flex region
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// The Function App, running as the user-assigned identity; HTTPS only, TLS 1.2, no FTP
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Microsoft Graph delivers notifications from the internet, so the app needs public network access; the webhooks authenticate each notification by clientState
  // checkov:skip=CKV_AZURE_17: Microsoft Graph does not present client certificates to webhooks
  // checkov:skip=CKV_AZURE_213: the platform health check is not used on Flex Consumption (scale to zero); /api/health is for operators and needs a function key
  // checkov:skip=CKV_AZURE_212: checkov reads the instance count of other plans (numberOfWorkers); Flex Consumption keeps its always-ready instances in functionAppConfig.scaleAndConcurrency.alwaysReady (one for the HTTP functions by default), and per-instance failover is the platform's
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    // Outbound through the VNet (main.bicep vnetEnabled): storage and Key Vault by their private
    // endpoints; Flex Consumption integrates with a subnet delegated to Microsoft.App/environments
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // "http" is the group of every HTTP-triggered function (learn.microsoft.com/azure/
        // azure-functions/flex-consumption-plan#always-ready-instances): Graph waits 3 s for an
        // answer and drops notifications to an endpoint that is often slow, and a cold start
        // imports the app first. Left out at 0 rather than sent as a zero count.
        alwaysReady: (alwaysReadyHttpInstances > 0) ? [
          {
            name: 'http'
            instanceCount: alwaysReadyHttpInstances
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// App settings: written after the app exists so the webhook URLs use its real host name
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; besides, Graph posts without credentials, so the webhooks are anonymous and authenticated by clientState
  // checkov:skip=CKV_AZURE_222: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; the site itself needs public access (Graph webhooks)
  // checkov:skip=CKV_AZURE_63: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; logs go to Application Insights
  // checkov:skip=CKV_AZURE_66: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; logs go to Application Insights
  // checkov:skip=CKV_AZURE_80: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; the app is Python, not .NET
  // checkov:skip=CKV_AZURE_88: this is the 'appsettings' config resource, which holds app settings only; checkov applies its site 'web' config checks to every Microsoft.Web/sites/config; Flex Consumption has no Azure Files content share
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage (timers, leases, keys) and the queue trigger's connection, by managed identity
    AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
    AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // The archive: its own account by default, where this identity may create and read blobs
    // but not delete them (rbac.bicep)
    ARCHIVE_STORAGE__blobServiceUri: archiveBlobEndpoint
    ARCHIVE_STORAGE__credential: 'managedidentity'
    ARCHIVE_STORAGE__clientId: identityClientId
    ARCHIVE_CONTAINER: archiveContainerName
    ANALYTICS_CONTAINER: analyticsContainerName
    CALLRECORDS_QUEUE: callrecordsQueueName
    GRAPH_BASE_URL: graphBaseUrl
    // Resolved by the platform with keyVaultReferenceIdentity; the value itself never lands here
    GRAPH_CLIENT_STATE: '@Microsoft.KeyVault(SecretUri=${clientStateSecretUri})'
    // Anonymous webhooks (clientState is the secret), so no ?code= in the URLs
    NOTIFICATION_URL: 'https://${functionApp.properties.defaultHostName}/api/notifications'
    LIFECYCLE_NOTIFICATION_URL: 'https://${functionApp.properties.defaultHostName}/api/lifecycle'
    AZURE_CLIENT_ID: identityClientId
    ARCHIVE_RETRY_BASE_SECONDS: string(archiveRetryBaseSeconds)
    ARCHIVE_RETRY_WINDOW_MINUTES: string(archiveRetryWindowMinutes)
    // PSTN / Direct Routing logs: how far back the first hourly run reads
    USAGE_LOGS_BACKFILL_DAYS: string(usageLogsBackfillDays)
    // During a clientState rotation only, the previous secret, still accepted on notifications:
    // a Key Vault reference too, written from the azd environment (docs/operations.md)
    GRAPH_CLIENT_STATE_PREVIOUS: empty(previousClientStateSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${previousClientStateSecretUri})'
    // participants_v2 by cloud (global only); Graph's per-record limits; fetch time budget
    GRAPH_PARTICIPANTS_V2: 'auto'
    GRAPH_RECORD_FIRST_PAGE_PACE: '10/20'
    GRAPH_RECORD_NEXT_PAGES_PACE: '50/300'
    ARCHIVE_FETCH_BUDGET_SECONDS: '300'
    // Retry, poison and reconciliation policy: the app's defaults, written out to be tuned here
    ARCHIVE_RETRY_MAX_SECONDS: '1800'
    ARCHIVE_GIVE_UP_HOURS: '24'
    ARCHIVE_MAX_LARGE_FETCHES: '4'
    POISON_ALERT_HOURS: '0'
    RECONCILE_RECENT_HOURS: '4'
    // Hourly runs per rolling sweep of Graph's whole 30 days (weekly)
    RECONCILE_SWEEP_HOURS: '168'
    // A Graph 403 is retried, not parked, this long after it is first seen (a new app role
    // can take about a day to reach a managed identity's tokens)
    GRAPH_PERMISSION_GRACE_HOURS: '24'
    // Late usage rows: a deep re-read of this many days once every so many hours (0: every run)
    USAGE_LOGS_REREAD_DAYS: '7'
    USAGE_LOGS_REREAD_EVERY_HOURS: '24'
    // The usage logs to sync; auto: both in the global cloud, PSTN only in national clouds
    USAGE_LOGS_KINDS: 'auto'
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(requestBodySizeLimitBytes)
  }
}

// No basic-auth (publishing password) deployments: azd deploys with an Entra ID token
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// No FTP basic auth either
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

@description('Name of the Function App.')
output name string = functionApp.name

@description('Default host name of the Function App.')
output defaultHostName string = functionApp.properties.defaultHostName

@description('URL of the change-notification webhook (NOTIFICATION_URL).')
output notificationUrl string = 'https://${functionApp.properties.defaultHostName}/api/notifications'

@description('URL of the lifecycle-notification webhook (LIFECYCLE_NOTIFICATION_URL).')
output lifecycleNotificationUrl string = 'https://${functionApp.properties.defaultHostName}/api/lifecycle'
