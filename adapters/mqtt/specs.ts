/** What the MQTT adapter implements, for docs/compliance.md. */
export const mqttSpecs: {
  spec: string;
  section?: string;
  status: 'complete' | 'partial';
  where: string;
  note?: string;
}[] = [
  {
    spec: 'MQTT 3.1.1',
    section: '3.1 CONNECT/CONNACK',
    status: 'complete',
    where: 'adapters/mqtt/auth.ts',
    note: 'every return code; accounts shared with XMPP',
  },
  {
    spec: 'MQTT 3.1.1',
    section: '3.3-3.7 PUBLISH QoS 0/1/2',
    status: 'complete',
    where: 'aedes + adapters/mqtt/authorize.ts',
  },
  {
    spec: 'MQTT 3.1.1',
    section: '3.8-3.11 SUBSCRIBE/UNSUBSCRIBE',
    status: 'complete',
    where: 'aedes + adapters/mqtt/authorize.ts',
    note: 'SUBACK 0x80 on ACL denial',
  },
  {
    spec: 'MQTT 3.1.1',
    section: '3.1.2.5 will, 3.1.2.4 clean session',
    status: 'complete',
    where: 'aedes + adapters/mqtt/wills.ts',
    note: 'wills of a killed node fire at restart',
  },
  {
    spec: 'MQTT 3.1.1',
    section: '4.7 topic names and filters',
    status: 'complete',
    where: 'adapters/mqtt/topics.ts, guard.ts',
  },
  {
    spec: 'MQTT 3.1.1',
    section: '4.8 error handling',
    status: 'complete',
    where: 'adapters/mqtt/guard.ts',
    note: 'malformed packets close only that connection',
  },
  {
    spec: 'Parley history topics',
    status: 'complete',
    where: 'adapters/mqtt/history.ts',
    note: 'history/request/{me} → history/response/{me}: pages of the user archive, same ids as XEP-0313 (docs/mqtt-mapping.md §9a)',
  },
  {
    spec: 'MQTT 5',
    status: 'partial',
    where: 'adapters/mqtt/auth.ts',
    note: 'not supported: CONNACK 0x01 unacceptable protocol version',
  },
];
