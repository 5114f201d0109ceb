// Drives the emulator's device side with the official Node device SDK over MQTT (8883) and MQTT over
// WebSockets (443), and checks each answer the back end sees through the official service SDK: twin
// GET, reported patch, desired push, a direct method and a method job whose row carries the device's
// answer; a SAS token renewal, which the SDK makes by reconnecting with the same session, after which
// methods still reach the device; and a module client (ModuleClient) with its own twin and methods.
// Run against
//   rollout emulator --fleet fleet.yaml --listen 127.0.0.1:443 --cert-dir DIR
// with IOTHUB_CONNECTION_STRING and NODE_EXTRA_CA_CERTS as it prints them.
const assert = require('assert');
const fs = require('fs');
const https = require('https');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const iothub = require('azure-iothub');

const cs = process.env.IOTHUB_CONNECTION_STRING;
const ca = fs.readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8');
const registry = iothub.Registry.fromConnectionString(cs);
const service = iothub.Client.fromConnectionString(cs);
const jobs = iothub.JobClient.fromConnectionString(cs);
const host = /HostName=([^;]+)/.exec(cs)[1];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(id, Transport) {
  // The device connection string is built from the registry's keys, as a real back end does.
  const dev = (await registry.get(id)).responseBody;
  const client = DeviceClient.fromConnectionString(
    `HostName=${host};DeviceId=${id};SharedAccessKey=${dev.authentication.symmetricKey.primaryKey}`, Transport);
  client.setOptions({ ca });
  await client.open();
  const twin = await client.getTwin();
  assert.strictEqual(typeof twin.properties.desired.$version, 'number');
  await new Promise((res, rej) => twin.properties.reported.update({ battery: 90 }, (e) => (e ? rej(e) : res())));
  const patches = [];
  twin.on('properties.desired', (p) => patches.push(p));
  client.onDeviceMethod('reboot', (req, res) => res.send(201, { rebooted: id, got: req.payload }, () => {}));
  await sleep(300);
  const t = (await registry.getTwin(id)).responseBody;
  assert.strictEqual(t.properties.reported.battery, 90);
  assert.strictEqual(t.connectionState, 'Connected');
  await registry.updateTwin(id, { properties: { desired: { fw: '2.0' } } }, '*');
  await sleep(500);
  assert.ok(patches.some((p) => p.fw === '2.0' && typeof p.$version === 'number'), JSON.stringify(patches));
  const m = await service.invokeDeviceMethod(id, { methodName: 'reboot', payload: { n: 1 }, responseTimeoutInSeconds: 10 });
  assert.strictEqual(m.result.status, 201);
  assert.deepStrictEqual(m.result.payload, { rebooted: id, got: { n: 1 } });
  const jobId = `job-${id}-${Date.now()}`;
  await jobs.scheduleDeviceMethod(jobId, `deviceId = '${id}'`, { methodName: 'reboot', payload: { job: true }, responseTimeoutInSeconds: 10 });
  let status = '';
  for (let i = 0; i < 40 && status !== 'completed'; i++) {
    const r = await jobs.getJob(jobId);
    status = (r.result || r.responseBody || r).status;
    await sleep(250);
  }
  const page = await registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`).next();
  const rows = page.result || page;
  assert.strictEqual(rows[0].status, 'completed');
  assert.strictEqual(rows[0].outcome.deviceMethodResponse.status, 201);
  await client.close();
  console.log(`ok ${id} over ${Transport.name}`);
}

// connection is the emulator's record of the live connection of key (a device id, or id/module).
function connection(key) {
  return new Promise((resolve, reject) => {
    https.get(`https://${host}/_emulator/connections`, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        const live = JSON.parse(body).connections;
        resolve(live.find((c) => (c.moduleId ? `${c.deviceId}/${c.moduleId}` : c.deviceId) === key));
      });
    }).on('error', reject);
  });
}

async function renewal(id, Transport) {
  const dev = (await registry.get(id)).responseBody;
  const client = DeviceClient.fromConnectionString(
    `HostName=${host};DeviceId=${id};SharedAccessKey=${dev.authentication.symmetricKey.primaryKey}`, Transport);
  // A token valid 6 s renewed 3 s before its end: the SDK reconnects every 3 s and subscribes to
  // nothing again, so methods keep arriving only if the session's subscriptions survive.
  client.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 6, tokenRenewalMarginInSeconds: 3 } });
  await client.open();
  client.onDeviceMethod('ping', (req, res) => res.send(200, { pong: id }, () => {}));
  await sleep(300);
  const first = await connection(id);
  assert.ok(first, 'no live connection');
  let now = first;
  for (let i = 0; i < 60 && (!now || now.since === first.since); i++) {
    await sleep(250);
    now = await connection(id);
  }
  assert.ok(now && now.since !== first.since, 'the SDK did not reconnect to renew its token');
  const m = await service.invokeDeviceMethod(id, { methodName: 'ping', payload: null, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 5 });
  assert.strictEqual(m.result.status, 200);
  assert.deepStrictEqual(m.result.payload, { pong: id });
  await client.close();
  console.log(`ok ${id} token renewal over ${Transport.name}`);
}

async function moduleRun(id, mid, Transport) {
  const mod = (await registry.getModule(id, mid)).responseBody;
  const client = ModuleClient.fromConnectionString(
    `HostName=${host};DeviceId=${id};ModuleId=${mid};SharedAccessKey=${mod.authentication.symmetricKey.primaryKey}`, Transport);
  client.setOptions({ ca });
  await client.open();
  const twin = await client.getTwin();
  assert.strictEqual(twin.properties.desired.rate, 5);
  await new Promise((res, rej) => twin.properties.reported.update({ state: 'scanning' }, (e) => (e ? rej(e) : res())));
  const patches = [];
  twin.on('properties.desired', (p) => patches.push(p));
  client.onMethod('scan', (req, res) => res.send(200, { scanned: `${id}/${mid}`, got: req.payload }, () => {}));
  await sleep(300);
  const t = (await registry.getModuleTwin(id, mid)).responseBody;
  assert.strictEqual(t.moduleId, mid);
  assert.strictEqual(t.properties.reported.state, 'scanning');
  await registry.updateModuleTwin(id, mid, { properties: { desired: { rate: 1 } } }, '*');
  await sleep(500);
  assert.ok(patches.some((p) => p.rate === 1 && typeof p.$version === 'number'), JSON.stringify(patches));
  const m = await service.invokeDeviceMethod(id, mid, { methodName: 'scan', payload: { n: 2 }, responseTimeoutInSeconds: 10 });
  assert.strictEqual(m.result.status, 200);
  assert.deepStrictEqual(m.result.payload, { scanned: `${id}/${mid}`, got: { n: 2 } });
  await client.close();
  console.log(`ok module ${id}/${mid} over ${Transport.name}`);
}

(async () => {
  const steps = [
    () => run('Device-1', Mqtt), () => run('Device-2', MqttWs),
    () => renewal('Device-1', Mqtt), () => renewal('Device-2', MqttWs),
    () => moduleRun('Gateway-1', 'sensor', Mqtt), () => moduleRun('Gateway-1', 'camera', MqttWs),
  ];
  for (const step of steps) await step(); // any failure throws and exits 1
  console.log(`device SDK: ${steps.length} passed, 0 failed`);
})().catch((e) => { console.error('FAIL', e); process.exit(1); });
