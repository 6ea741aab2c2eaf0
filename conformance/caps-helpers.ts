// Entity capabilities for the black-box tests [XEP-0115]: the ver string of
// a client's features, and a login that advertises `+notify` for PEP nodes.
import { createHash } from 'node:crypto';
import { ping, xml, xmppClient, type TestClient } from './helpers.ts';

export const NS_CAPS = 'http://jabber.org/protocol/caps';
const NS_DISCO = 'http://jabber.org/protocol/disco#info';

/** [XEP-0115 5.1] the ver of one identity and a feature list (no forms). */
export function capsVer(features: string[]): string {
  let s = 'client/pc//parley-test<';
  for (const f of [...features].sort()) s += `${f}<`;
  return createHash('sha1').update(s).digest('base64');
}

/** Log in, answer disco#info with `<node>+notify` for each node, send available presence with caps [XEP-0115 4] [XEP-0163 4]. */
export async function loginWithNotify(
  port: number,
  username: string,
  password: string,
  resource: string,
  notify: string[],
): Promise<TestClient> {
  const c = await xmppClient({ port, username, password, resource });
  const features = [NS_DISCO, NS_CAPS, ...notify.map((n) => `${n}+notify`)];
  c.xmpp.iqCallee.get(NS_DISCO, 'query', () =>
    xml(
      'query',
      { xmlns: NS_DISCO },
      xml('identity', { category: 'client', type: 'pc', name: 'parley-test' }),
      ...features.map((f) => xml('feature', { var: f })),
    ),
  );
  await c.send(
    xml(
      'presence',
      {},
      xml('c', {
        xmlns: NS_CAPS,
        hash: 'sha-1',
        node: 'https://parley.test',
        ver: capsVer(features),
      }),
    ),
  );
  await ping(c);
  return c;
}
