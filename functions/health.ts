// Liveness: open to anyone, touches nothing.
import { json, route } from './shared/route';

route('health', {
  methods: ['GET'],
  route: 'health',
  access: 'anonymous',
  usesStorage: false,
  handler: async () => json(200, { status: 'ok', time: new Date().toISOString() }),
});
