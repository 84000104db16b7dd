// Inside one pool resource group: the control plane's identity may manage Azure Relay here and
// nowhere else, and the Relay audit policy is assigned here.

param location string
param appPrincipalId string

@description('Policy definition to assign (from pool-subscription.bicep); empty = no audit policy.')
param policyDefinitionId string = ''
param logAnalyticsWorkspaceId string = ''
param diagnosticSettingName string = 'relay-broker-audit'

var roles = {
  // Actions Microsoft.Relay/* (create/delete namespaces, hybrid connections, rules, listKeys,
  // regenerateKeys, operation results) and DataActions Microsoft.Relay/*. Narrower than
  // Contributor: no other resource type, no deployments, no role assignments.
  azureRelayOwner: '2787bf04-f1f5-4bfe-8383-c8a24483ee38'
  monitoringContributor: '749f88d5-cbae-40b8-bcfc-e573ddc772fa'
}

resource appRelayOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, appPrincipalId, roles.azureRelayOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureRelayOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'relay-broker control plane: lease pool namespaces in this group'
  }
}

var enableAudit = !empty(policyDefinitionId)

resource relayDiagnostics 'Microsoft.Authorization/policyAssignments@2023-04-01' = if (enableAudit) {
  name: 'relay-broker-relay-diagnostics'
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'relay-broker: Relay namespace logs to Log Analytics'
    policyDefinitionId: policyDefinitionId
    parameters: {
      logAnalytics: {
        value: logAnalyticsWorkspaceId
      }
      settingName: {
        value: diagnosticSettingName
      }
    }
  }
}

// The policy's identity writes diagnostic settings on namespaces in this group.
resource policyMonitoringContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableAudit) {
  name: guid(resourceGroup().id, 'relay-broker-relay-diagnostics', roles.monitoringContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringContributor)
    principalId: enableAudit ? relayDiagnostics!.identity.principalId : ''
    principalType: 'ServicePrincipal'
  }
}

output policyPrincipalId string = enableAudit ? relayDiagnostics!.identity.principalId : ''
