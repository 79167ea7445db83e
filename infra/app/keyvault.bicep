metadata description = 'Key Vault (Azure RBAC permission model) holding the Graph subscription secret (clientState), and the previous one during a rotation, with its audit log sent to Log Analytics.'

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

@description('Optional. Name of the secret holding the previous clientState during a rotation.')
param previousClientStateSecretName string = '${clientStateSecretName}-previous'

@secure()
@description('Optional. The previous Graph clientState during a rotation; empty = no rotation under way, no secret written.')
param previousClientStateValue string = ''

@description('Optional. true while a clientState rotation is under way (previousClientStateValue set); a plain flag, so that no output reads the secure value.')
param rotationUnderWay bool = false

@description('Optional. Purge protection: a deleted vault (and its secrets) can be recovered, never purged, until the soft-delete retention ends. On by default; once on it cannot be turned off again. false is for throwaway trials, where `azd down --purge` should free the name at once.')
param enablePurgeProtection bool = true

@description('Optional. true = reachable only through its private endpoint: public network access Disabled (main.bicep vnetEnabled). ARM still writes the secrets: that is the control plane.')
param privateNetworking bool = false

@description('Optional. Resource id of the Log Analytics workspace that receives the vault\'s audit log (every secret read, by whom); empty = no diagnostic setting.')
param logAnalyticsWorkspaceId string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: public mode only (vnetEnabled=false): Flex Consumption without VNet integration has no fixed outbound IPs and Key Vault references are not a trusted-service bypass; access is by Entra ID + RBAC on the single secret. With vnetEnabled the default action is Deny.
  // checkov:skip=CKV_AZURE_189: public mode only (vnetEnabled=false), for the same reason as CKV_AZURE_109. With vnetEnabled public network access is Disabled.
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
    // Written as `true` or left out: the API refuses false once purge protection is on
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // One line each, `privateNetworking ? private : public` (scanned in both modes by test_infra)
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
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

// The previous clientState while a rotation is under way (docs/operations.md). Written from
// the azd environment on every provision, like the current one, so a provision never erases
// it; absent (and not referenced by the app) when no rotation is under way.
resource previousClientStateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(previousClientStateValue)) {
  // checkov:skip=CKV_AZURE_41: the previous clientState is removed by the next provision after the rotation (docs/operations.md); an expiry date would cut a rotation short
  // checkov:skip=CKV_AZURE_114: contentType is set (text/plain, below); checkov does not read the properties of a conditional (if) resource
  parent: vault
  name: previousClientStateSecretName
  properties: {
    value: previousClientStateValue
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

@description('Name of the previous-clientState secret (it exists only while a rotation is under way).')
output previousClientStateSecretName string = previousClientStateSecretName

@description('Versionless URI of the previous-clientState secret; empty when no rotation is under way.')
output previousClientStateSecretUri string = rotationUnderWay ? '${vault.properties.vaultUri}secrets/${previousClientStateSecretName}' : ''
