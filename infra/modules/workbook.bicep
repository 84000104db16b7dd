// The operations workbook: the OpenTelemetry metrics of lib/metrics.ts as Application Insights
// stores them (customMetrics: name = the instrument's name, customDimensions = its attributes,
// valueSum/valueCount per export interval, counters as deltas). One chart per figure of
// docs/operations.md §3: opens and open latency by outcome, sessions live, the pool by state and
// subscription, ARM calls and 429s, maintenance outcomes, device heartbeats.

param location string
param tags object
param applicationInsightsName string

@description('Display name of the workbook in the portal.')
param displayName string = 'relay-broker operations'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var bin = '5m'

// Each chart: a title, a query, and how to draw it.
var charts = [
  {
    name: 'opens'
    title: 'Session opens by outcome (per 5 min)'
    visualization: 'barchart'
    query: 'customMetrics\n| where name == "relay_broker.session.opens"\n| extend outcome = tostring(customDimensions.outcome)\n| summarize opens = sum(valueSum) by outcome, bin(timestamp, ${bin})'
  }
  {
    name: 'openLatency'
    title: 'Open latency by outcome: mean and max (ms)'
    visualization: 'timechart'
    query: 'customMetrics\n| where name == "relay_broker.session.open.duration"\n| extend outcome = tostring(customDimensions.outcome)\n| summarize meanMs = sum(valueSum) / sum(valueCount), maxMs = max(valueMax) by outcome, bin(timestamp, ${bin})'
  }
  {
    name: 'sessionsLive'
    title: 'Sessions live (leased namespaces)'
    visualization: 'timechart'
    query: 'customMetrics\n| where name == "relay_broker.sessions.live"\n| summarize live = max(value) by bin(timestamp, ${bin})'
  }
  {
    name: 'poolByState'
    title: 'Pool namespaces by state'
    visualization: 'areachart'
    query: 'customMetrics\n| where name == "relay_broker.pool.namespaces"\n| extend state = tostring(customDimensions.state), subscription = tostring(customDimensions.subscription)\n| summarize arg_max(timestamp, value) by state, subscription, bin(timestamp, ${bin})\n| summarize namespaces = sum(value) by state, timestamp'
  }
  {
    name: 'poolBySubscription'
    title: 'Pool now, by subscription and state'
    visualization: 'table'
    query: 'customMetrics\n| where timestamp > ago(15m)\n| where name == "relay_broker.pool.namespaces"\n| extend state = tostring(customDimensions.state), subscription = tostring(customDimensions.subscription)\n| summarize arg_max(timestamp, value) by subscription, state\n| evaluate pivot(state, sum(value), subscription)'
  }
  {
    name: 'arm'
    title: 'ARM calls by status, and 429s (per 5 min)'
    visualization: 'timechart'
    query: 'customMetrics\n| where name in ("relay_broker.arm.calls", "relay_broker.arm.throttled")\n| extend series = iff(name == "relay_broker.arm.throttled", "429 (throttled)", strcat(tostring(customDimensions.method), " ", tostring(customDimensions.status)))\n| summarize calls = sum(valueSum) by series, bin(timestamp, ${bin})'
  }
  {
    name: 'maintenance'
    title: 'Pool maintenance runs by outcome'
    visualization: 'barchart'
    query: 'customMetrics\n| where name == "relay_broker.pool.maintenance.runs"\n| extend outcome = tostring(customDimensions.outcome)\n| summarize runs = sum(valueSum) by outcome, bin(timestamp, 15m)'
  }
  {
    name: 'heartbeats'
    title: 'Device heartbeats (per 5 min)'
    visualization: 'timechart'
    query: 'customMetrics\n| where name == "relay_broker.device.heartbeats"\n| summarize heartbeats = sum(valueSum) by bin(timestamp, ${bin})'
  }
]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat(
    [
      {
        type: 1
        name: 'title'
        content: {
          json: '## relay-broker\nMetrics from the function app (OpenTelemetry, Azure Monitor exporter, every 60 s). Alerts and what to do: docs/operations.md §3.'
        }
      }
    ],
    map(charts, c => {
      type: 3
      name: c.name
      content: {
        version: 'KqlItem/1.0'
        query: c.query
        size: 0
        title: c.title
        timeContext: {
          durationMs: 86400000
        }
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: c.visualization
      }
    })
  )
  fallbackResourceIds: [
    appInsights.id
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // Workbook names are GUIDs; this one is stable per Application Insights resource.
  name: guid(appInsights.id, 'relay-broker-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string(workbookContent)
  }
}

output workbookId string = workbook.id
