metadata description = 'Key Vault (Azure RBAC permission model) holding the Graph subscription secret (clientState), with its audit log sent to Log Analytics.'

// The Function App reads the secret through a Key Vault reference resolved with its
// user-assigned identity, which holds Key Vault Secrets User on this one secret only
// (rbac.bicep); the value never appears in the app settings, the template outputs or the
// deployment history.

@description('Required. Name of the vault.')
param name string

@description('Required. Region of the vault.')
param location string

@description('Optional. Tags of the vault.')
param tags { *: string } = {}

@description('Required. Name of the secret holding the Graph clientState.')
param clientStateSecretName string

@secure()
@description('Required. The Graph clientState.')
param clientStateValue string

@description('Optional. Purge protection cannot be turned off again once on; off by default so that `azd down --purge` can remove the vault.')
param enablePurgeProtection bool = false

@description('Optional. Resource id of the Log Analytics workspace that receives the vault\'s audit log (every secret read, by whom); empty = no diagnostic setting.')
param logAnalyticsWorkspaceId string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_42: recoverability = soft delete (on, 7 days) + purge protection (parameter, off by default so that azd down --purge can delete the vault; azd keeps the secret's value in the environment config)
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration has no fixed outbound IPs and Key Vault references are not a trusted-service bypass; access is by Entra ID + RBAC on the single secret
  // checkov:skip=CKV_AZURE_110: purge protection is the enablePurgeProtection parameter, off by default for the same reason as CKV_AZURE_42
  // checkov:skip=CKV_AZURE_189: public network access is needed for the same reason as CKV_AZURE_109
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Generated once per environment by azd (main.bicep)
resource clientStateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the clientState has no natural expiry; an expiry date would silently break notification validation. Rotate by redeploying with a new value.
  parent: vault
  name: clientStateSecretName
  properties: {
    value: clientStateValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

// AuditEvent: every authenticated request, including each resolution of the Key Vault
// reference (SecretGet by the app's identity). Microsoft's own queries for it read the
// AzureDiagnostics table (learn.microsoft.com/azure/key-vault/general/monitor-key-vault), so the
// default destination type is kept.
resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

@description('Name of the vault.')
output name string = vault.name

@description('Resource id of the vault.')
output id string = vault.id

@description('Name of the clientState secret.')
output clientStateSecretName string = clientStateSecret.name

@description('Versionless URI of the clientState secret: the app follows a rotated secret on its next Key Vault reference refresh.')
output clientStateSecretUri string = clientStateSecret.properties.secretUri
