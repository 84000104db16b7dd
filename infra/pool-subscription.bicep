// One pool subscription of relay-broker: the resource group the pool creates Relay namespaces in
// (at run time, through ARM; no namespace is declared here), the control plane's right to manage
// Relay in that group only, and the Relay audit logs of every namespace that appears in it.
//
// Deploy once per subscription listed in POOL_SUBSCRIPTIONS:
//   az deployment sub create --subscription <pool sub> -l <region> -f infra/pool-subscription.bicep \
//     -p poolResourceGroupName=<rg> appPrincipalId=<principalId output of main.bicep> \
//        logAnalyticsWorkspaceId=<logAnalyticsWorkspaceId output of main.bicep>
// Also once per pool subscription: az provider register --namespace Microsoft.Relay (the app's
// role is limited to the group and cannot register resource providers).

targetScope = 'subscription'

@description('Resource group the pool creates namespaces in (the resourceGroup of this subscription\'s POOL_SUBSCRIPTIONS entry).')
@minLength(1)
@maxLength(90)
param poolResourceGroupName string

@description('Region of the group and of the namespaces (the location of the POOL_SUBSCRIPTIONS entry).')
param location string = deployment().location

@description('principalId output of main.bicep: the function app\'s system-assigned identity.')
param appPrincipalId string

@description('Log Analytics workspace receiving Relay HybridConnectionsEvent logs (logAnalyticsWorkspaceId output of main.bicep). Empty: no audit policy (not recommended).')
param logAnalyticsWorkspaceId string = ''

@description('Name of the diagnostic setting the policy writes on each namespace.')
param diagnosticSettingName string = 'relay-broker-audit'

param tags object = {
  application: 'relay-broker'
  role: 'relay-pool'
}

resource poolGroup 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: poolResourceGroupName
  location: location
  tags: tags
}

var enableAudit = !empty(logAnalyticsWorkspaceId)
var policyDefinitionName = 'relay-broker-relay-diagnostics'

// deployIfNotExists: when a namespace is created (or updated) in a group where this is assigned,
// Azure Policy deploys a diagnostic setting sending all Relay logs (HybridConnectionsEvent) and
// metrics to the workspace. Chosen over letting the app write diagnostic settings itself, which
// would need Monitoring Contributor plus rights on the workspace for the app's identity. The
// policy runs some minutes after creation and logs start ~10 min later; namespaces are created
// ahead of demand by pool maintenance, so they are audited before their first lease in practice.
resource relayDiagnosticsPolicy 'Microsoft.Authorization/policyDefinitions@2023-04-01' = if (enableAudit) {
  name: policyDefinitionName
  properties: {
    policyType: 'Custom'
    mode: 'Indexed'
    displayName: 'relay-broker: send Azure Relay namespace logs to Log Analytics'
    description: 'Deploys a diagnostic setting (allLogs + AllMetrics) on every Microsoft.Relay/namespaces in scope.'
    metadata: {
      category: 'Monitoring'
    }
    parameters: {
      logAnalytics: {
        type: 'String'
        metadata: {
          displayName: 'Log Analytics workspace'
          strongType: 'omsWorkspace'
          assignPermissions: true
        }
      }
      settingName: {
        type: 'String'
        defaultValue: 'relay-broker-audit'
        metadata: {
          displayName: 'Diagnostic setting name'
        }
      }
      effect: {
        type: 'String'
        defaultValue: 'DeployIfNotExists'
        allowedValues: [
          'DeployIfNotExists'
          'AuditIfNotExists'
          'Disabled'
        ]
        metadata: {
          displayName: 'Effect'
        }
      }
    }
    // Strings that start with '[' are policy-language expressions; Bicep emits them escaped so
    // that ARM passes them through to Azure Policy unevaluated.
    policyRule: {
      if: {
        field: 'type'
        equals: 'Microsoft.Relay/namespaces'
      }
      then: {
        effect: '[parameters(\'effect\')]'
        details: {
          type: 'Microsoft.Insights/diagnosticSettings'
          name: '[parameters(\'settingName\')]'
          roleDefinitionIds: [
            '/providers/Microsoft.Authorization/roleDefinitions/749f88d5-cbae-40b8-bcfc-e573ddc772fa' // Monitoring Contributor
            '/providers/Microsoft.Authorization/roleDefinitions/92aaf0da-9dab-42b6-94a3-d43ce8d16293' // Log Analytics Contributor
          ]
          existenceCondition: {
            allOf: [
              {
                field: 'Microsoft.Insights/diagnosticSettings/logs.enabled'
                equals: 'true'
              }
              {
                field: 'Microsoft.Insights/diagnosticSettings/workspaceId'
                equals: '[parameters(\'logAnalytics\')]'
              }
            ]
          }
          deployment: {
            properties: {
              mode: 'incremental'
              template: {
                '$schema': 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#'
                contentVersion: '1.0.0.0'
                parameters: {
                  resourceName: {
                    type: 'string'
                  }
                  logAnalytics: {
                    type: 'string'
                  }
                  settingName: {
                    type: 'string'
                  }
                }
                resources: [
                  {
                    type: 'Microsoft.Relay/namespaces/providers/diagnosticSettings'
                    apiVersion: '2021-05-01-preview'
                    name: '[concat(parameters(\'resourceName\'), \'/Microsoft.Insights/\', parameters(\'settingName\'))]'
                    properties: {
                      workspaceId: '[parameters(\'logAnalytics\')]'
                      // Resource-specific table AZMSHybridConnectionsEvents instead of AzureDiagnostics.
                      logAnalyticsDestinationType: 'Dedicated'
                      logs: [
                        {
                          categoryGroup: 'allLogs'
                          enabled: true
                        }
                      ]
                      metrics: [
                        {
                          category: 'AllMetrics'
                          enabled: true
                        }
                      ]
                    }
                  }
                ]
              }
              parameters: {
                resourceName: {
                  value: '[field(\'name\')]'
                }
                logAnalytics: {
                  value: '[parameters(\'logAnalytics\')]'
                }
                settingName: {
                  value: '[parameters(\'settingName\')]'
                }
              }
            }
          }
        }
      }
    }
  }
}

module poolAccess 'modules/poolGroupAccess.bicep' = {
  name: 'relay-broker-pool-access'
  scope: poolGroup
  params: {
    location: location
    appPrincipalId: appPrincipalId
    policyDefinitionId: enableAudit ? subscriptionResourceId('Microsoft.Authorization/policyDefinitions', policyDefinitionName) : ''
    logAnalyticsWorkspaceId: logAnalyticsWorkspaceId
    diagnosticSettingName: diagnosticSettingName
  }
  dependsOn: [
    relayDiagnosticsPolicy
  ]
}

// The workspace usually lives in the control plane's subscription: give the policy's identity
// the right to link diagnostic settings to it, on that one workspace. A placeholder id keeps the
// scope expression valid when auditing is off (the module is skipped then).
var workspaceIdParts = split(enableAudit ? logAnalyticsWorkspaceId : '/subscriptions/${subscription().subscriptionId}/resourceGroups/${poolResourceGroupName}/providers/Microsoft.OperationalInsights/workspaces/none', '/')

module workspaceAccess 'modules/workspaceAccess.bicep' = if (enableAudit) {
  name: 'relay-broker-pool-workspace-access'
  scope: resourceGroup(workspaceIdParts[2], workspaceIdParts[4])
  params: {
    workspaceName: workspaceIdParts[8]
    principalId: poolAccess.outputs.policyPrincipalId
  }
}

output poolResourceGroupId string = poolGroup.id
output policyAssignmentPrincipalId string = poolAccess.outputs.policyPrincipalId
