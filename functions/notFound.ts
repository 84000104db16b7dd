// The catch-all: any path under /api that no other function serves, and any method a route does
// not take, answers a problem document instead of the host's bare 404. Route precedence ranks a
// `{*path}` template below every other one (locally and in Azure), so it only gets the leftovers.
import { RouteNotFoundError } from '../lib/errors';
import { route } from './shared/route';

route('notFound', {
  methods: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'],
  route: '{*path}',
  access: 'anonymous',
  usesStorage: false,
  handler: ({ req }) => {
    throw new RouteNotFoundError(`No operation matches ${req.method} ${new URL(req.url).pathname}.`);
  },
});
