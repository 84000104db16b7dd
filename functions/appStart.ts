// App lifecycle hooks: validate every setting when the app starts, so a bad configuration fails
// loudly at start (naming the setting) instead of on the first request; forget cached clients
// when the app stops.
import { app } from '@azure/functions';
import { getConfig, resetConfigForTests } from '../lib/config';
import { resetServices } from './shared/services';

app.hook.appStart(() => {
  getConfig();
});

app.hook.appTerminate(() => {
  resetServices();
  resetConfigForTests();
});
