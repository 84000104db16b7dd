// Everything the function app's managed identity may touch in its own resource group, and no more:
// data-plane roles on its storage account, read access to the secrets of its dedicated Key Vault, and the right
// to publish telemetry with Entra auth. Rights in the pool subscriptions are granted by
// ../pool-subscription.bicep (Azure Relay Owner on each pool resource group only).

param principalId string
param storageAccountName string
param keyVaultName string
param applicationInsightsName string

// Built-in role definition ids (stable across tenants).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Flex deployment container, host keys and leases, Durable large payloads
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Durable control/work-item queues (device queues are in their own account, reached with its key)
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Durable history/instances, namespaces/sessions/devices/grants
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // resolve the STORAGE_ACCOUNT_KEY and SEALING_KEY references
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Entra-authenticated telemetry to Application Insights
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var storageRoleIds = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoleIds: {
    name: guid(storage.id, principalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// On the vault: it holds only this app's secrets (storage key, sealing key). A secret-scoped
// assignment would fail when the sealing key secret comes from an earlier deployment's run.
resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
