// Lets the Relay audit policy's identity link diagnostic settings to the control plane's Log
// Analytics workspace (deployed into the workspace's resource group, possibly another subscription).

param workspaceName string
param principalId string

var logAnalyticsContributor = '92aaf0da-9dab-42b6-94a3-d43ce8d16293'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource policyWorkspaceAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, logAnalyticsContributor)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
