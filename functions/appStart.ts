// App lifecycle hooks: validate every setting when the app starts, so a bad configuration fails
// loudly at start (naming the setting) instead of on the first request; forget cached clients
// when the app stops.
import { app } from '@azure/functions';
import { DefaultAzureCredential } from '@azure/identity';
import { getConfig, resetConfigForTests } from '../lib/config';
import { configureMetrics, shutdownMetrics } from '../lib/metrics';
import { resetServices } from './shared/services';

app.hook.appStart(() => {
  const { metrics } = getConfig();
  configureMetrics({
    azureMonitorConnectionString: metrics.azureMonitorConnectionString,
    // APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD: ingestion with the managed identity.
    ...(metrics.entraIngestion ? { azureMonitorCredential: new DefaultAzureCredential() } : {}),
  });
});

app.hook.appTerminate(async () => {
  await shutdownMetrics();
  resetServices();
  resetConfigForTests();
});
