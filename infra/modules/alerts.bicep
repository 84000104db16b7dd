// docs/operations.md §3's alerts as log search alert rules over the metrics of lib/metrics.ts in
// Application Insights (customMetrics): the pool exhausted, maintenance failing or not running,
// ARM throttling, and devices going offline (heartbeats falling). Each fires when its query
// returns a row; docs/operations.md says what each one means and what to do.

param location string
param tags object
param applicationInsightsName string

@description('Action group notified by every alert (resource id); empty: the alerts fire in the portal only.')
param actionGroupId string = ''

@description('ARM 429 answers in 15 minutes that raise the throttling alert.')
@minValue(1)
param armThrottledThreshold int = 20

@description('Drop of device heartbeats (percent, last 15 min against the same 15 min an hour earlier) that raises the device offline alert.')
@minValue(1)
@maxValue(100)
param deviceHeartbeatDropPercent int = 30

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var rules = [
  {
    name: 'pool-exhausted'
    displayName: 'relay-broker: sessions refused, pool exhausted'
    description: 'POST /sessions answered pool_exhausted (503): no namespace was available. docs/operations.md §3.3.'
    severity: 1
    windowSize: 'PT15M'
    query: 'customMetrics\n| where timestamp > ago(15m)\n| where name == "relay_broker.session.opens" and tostring(customDimensions.outcome) == "pool_exhausted"\n| summarize refused = sum(valueSum)\n| where refused > 0'
  }
  {
    name: 'maintenance-failing'
    displayName: 'relay-broker: pool maintenance failing or not running'
    description: 'No maintenance run finished in 15 minutes, or a run failed. docs/operations.md §3.1.'
    severity: 2
    windowSize: 'PT15M'
    query: 'customMetrics\n| where timestamp > ago(15m)\n| where name == "relay_broker.pool.maintenance.runs"\n| summarize runs = sum(valueSum), failed = sumif(valueSum, tostring(customDimensions.outcome) == "failed")\n| where runs == 0 or failed > 0'
  }
  {
    name: 'arm-throttling'
    displayName: 'relay-broker: ARM throttling'
    description: 'Azure Resource Manager answered 429 to the pool\'s Relay calls ${armThrottledThreshold} times or more in 15 minutes. docs/operations.md §3.6.'
    severity: 3
    windowSize: 'PT15M'
    query: 'customMetrics\n| where timestamp > ago(15m)\n| where name == "relay_broker.arm.throttled"\n| summarize throttled = sum(valueSum)\n| where throttled >= ${armThrottledThreshold}'
  }
  {
    name: 'device-offline-rate'
    displayName: 'relay-broker: devices going offline'
    description: 'Device heartbeats fell by ${deviceHeartbeatDropPercent}% or more against the same 15 minutes an hour earlier. docs/operations.md §3.7.'
    severity: 2
    windowSize: 'PT2H'
    query: 'let beats = customMetrics | where name == "relay_broker.device.heartbeats";\nlet recent = toscalar(beats | where timestamp > ago(15m) | summarize sum(valueSum));\nlet before = toscalar(beats | where timestamp between (ago(75m) .. ago(60m)) | summarize sum(valueSum));\nprint recent = coalesce(recent, 0.0), before = coalesce(before, 0.0)\n| extend dropPercent = iff(before > 0, 100.0 * (before - recent) / before, 0.0)\n| where dropPercent >= ${deviceHeartbeatDropPercent}'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'rbk-${rule.name}-${uniqueString(appInsights.id)}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsights.id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: rule.windowSize
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: empty(actionGroupId) ? [] : [
          actionGroupId
        ]
      }
    }
  }
]

output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
