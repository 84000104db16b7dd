// GET /api/metrics (admin, local mode): the OpenTelemetry instruments of lib/metrics.ts in the
// Prometheus text format. In Azure the same instruments go to Application Insights (Azure Monitor
// exporter); a per-instance scrape there would show one instance's share, so it is not offered.
import { RouteNotFoundError } from '../lib/errors';
import { prometheusText } from '../lib/metrics';
import { route } from './shared/route';

route('metrics', {
  methods: ['GET'],
  route: 'metrics',
  access: ['admin'],
  usesStorage: false,
  handler: async ({ services }) => {
    if (services.config.mode !== 'local') {
      throw new RouteNotFoundError(
        'Metrics are exported to Application Insights in Azure; GET /metrics is local only.',
      );
    }
    return {
      status: 200,
      headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' },
      body: await prometheusText(),
    };
  },
});
