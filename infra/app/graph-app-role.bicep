// Grants the Microsoft Graph application permission CallRecords.Read.All to the managed
// identity's service principal, with the Microsoft Graph Bicep extension (bicepconfig.json:
// microsoftGraphV1). Deploying this module needs a directory role that may grant app roles
// (Privileged Role Administrator or Global Administrator). Kept in its own module so that
// main.bicep can skip it (grantGraphPermission=false) and an administrator grants it by hand
// instead (infra/README.md).
extension microsoftGraphV1

@description('Required. Object id of the managed identity\'s service principal (userAssignedIdentities principalId).')
param principalId string

@description('Optional. Graph application permission to grant.')
param appRoleValue string = 'CallRecords.Read.All'

// The Microsoft Graph service principal of this tenant (well-known appId of Microsoft Graph)
resource msGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

// App role assignment: CallRecords.Read.All (app role id 45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8), looked up by value
resource callRecordsReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: filter(msGraph.appRoles, role => role.value == appRoleValue)[0].id
  principalId: principalId
  resourceId: msGraph.id
}

@description('Id of the app role assignment.')
output appRoleAssignmentId string = callRecordsReadAll.id
