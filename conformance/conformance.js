// Runs the official, unmodified Azure IoT Hub Node service SDK (npm azure-iothub) against the rollout
// emulator. The SDK always connects to port 443 of HostName, so the emulator must listen on
// 127.0.0.1:443 with HostName=localhost, and NODE_EXTRA_CA_CERTS must name its CA (run.sh does both).
//
// Needs IOTHUB_CONNECTION_STRING and a hub serving testdata/fleets/thermostats.yaml. Prints one line per
// step and a closing "N passed, N failed" line; exits non-zero when any step fails.
'use strict';

const assert = require('node:assert/strict');
const iothub = require('azure-iothub');

const cs = process.env.IOTHUB_CONNECTION_STRING;
if (!cs) {
  console.error('conformance: IOTHUB_CONNECTION_STRING is not set');
  process.exit(2);
}

const registry = iothub.Registry.fromConnectionString(cs);
const jobs = iothub.JobClient.fromConnectionString(cs);
const client = iothub.Client.fromConnectionString(cs);
const run = Date.now().toString(36);
const deviceId = 'conformance-' + run;

let passed = 0;
let failed = 0;

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log('ok     ' + name);
  } catch (err) {
    failed++;
    console.log('FAILED ' + name + ': ' + (err && err.stack ? err.stack : err));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForJob(jobId, want, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { jobStatus: result } = await jobs.getJob(jobId);
    if (result.status === want) {
      return result;
    }
    if (['completed', 'failed', 'cancelled'].includes(result.status) || Date.now() > deadline) {
      throw new Error(`job ${jobId} is ${result.status}, want ${want}: ${JSON.stringify(result)}`);
    }
    await sleep(200);
  }
}

// queryAll pages through a query with next() and returns every item and the page count.
async function queryAll(query, asTwin) {
  const items = [];
  let pages = 0;
  while (query.hasMoreResults) {
    // In promise mode next() without an argument restarts from the first page (an SDK quirk), so the
    // token is passed explicitly; nextAsTwin() keeps it by itself.
    const { result } = asTwin ? await query.nextAsTwin() : await query.next(query.continuationToken);
    pages++;
    items.push(...result);
    if (pages > 1000) {
      throw new Error('paging does not end');
    }
  }
  return { items, pages };
}

async function main() {
  await step('Registry.create generates keys', async () => {
    const { responseBody: result } = await registry.create({ deviceId });
    assert.equal(result.deviceId, deviceId);
    assert.ok(result.authentication.symmetricKey.primaryKey, 'primary key generated');
    assert.ok(result.authentication.symmetricKey.secondaryKey, 'secondary key generated');
  });

  await step('Registry.get', async () => {
    const { responseBody: result } = await registry.get(deviceId);
    assert.equal(result.deviceId, deviceId);
    assert.equal(result.status, 'enabled');
  });

  await step('Registry.list', async () => {
    const { responseBody: result } = await registry.list();
    assert.ok(Array.isArray(result));
    assert.ok(result.some((d) => d.deviceId === deviceId), 'created device listed');
    assert.ok(result.some((d) => d.deviceId === 'canary-0000'), 'fleet device listed');
  });

  await step('Registry.getTwin', async () => {
    const { responseBody: twin } = await registry.getTwin('canary-0001');
    assert.equal(twin.deviceId, 'canary-0001');
    assert.equal(twin.tags.ring, 'canary');
    assert.equal(twin.properties.reported.firmware.version, '2.3.0');
    assert.match(twin.etag, /^[A-Za-z0-9+/=]+$/);
  });

  await step('Registry.updateTwin with etag, stale etag refused with 412', async () => {
    const { responseBody: before } = await registry.getTwin(deviceId);
    const { responseBody: after } = await registry.updateTwin(deviceId, { tags: { conformance: run }, properties: { desired: { mode: 'eco' } } }, before.etag);
    assert.equal(after.tags.conformance, run);
    assert.equal(after.properties.desired.mode, 'eco');
    assert.notEqual(after.etag, before.etag);
    await assert.rejects(registry.updateTwin(deviceId, { tags: { stale: true } }, before.etag), (err) => {
      assert.equal(err.response && err.response.statusCode, 412, 'status 412');
      return true;
    });
    const { responseBody: forced } = await registry.updateTwin(deviceId, { tags: { forced: true } }, '*');
    assert.equal(forced.tags.forced, true);
  });

  await step('Registry.createQuery pages twins (page size 7)', async () => {
    const { items, pages } = await queryAll(registry.createQuery("SELECT * FROM devices WHERE tags.ring = 'canary'", 7), true);
    assert.equal(items.length, 20);
    assert.equal(pages, 3);
    assert.equal(new Set(items.map((t) => t.deviceId)).size, 20);
    assert.equal(typeof items[0].update, 'function', 'nextAsTwin gives Twin objects');
  });

  await step('Registry.createQuery aggregate', async () => {
    const { items } = await queryAll(registry.createQuery("SELECT COUNT() AS n FROM devices WHERE tags.region = 'eu'"), false);
    assert.deepEqual(items, [{ n: 220 }]);
  });

  const twinJob = 'conf-twin-' + run;
  await step('JobClient.scheduleTwinUpdate runs to completed', async () => {
    const patch = { etag: '*', tags: { fwChannel: 'stable' }, properties: { desired: { firmware: { version: '2.4.0' } } } };
    const { jobStatus: result } = await jobs.scheduleTwinUpdate(twinJob, "tags.ring = 'canary'", patch);
    assert.equal(result.jobId, twinJob);
    assert.equal(result.status, 'queued');
    const done = await waitForJob(twinJob, 'completed', 20000);
    assert.equal(done.deviceJobStatistics.deviceCount, 20);
    assert.equal(done.deviceJobStatistics.succeededCount, 20);
  });

  const methodJob = 'conf-method-' + run;
  await step('JobClient.scheduleDeviceMethod runs to completed', async () => {
    const { jobStatus: result } = await jobs.scheduleDeviceMethod(methodJob, "tags.ring = 'canary'", { methodName: 'install', payload: { version: '2.4.0' } });
    assert.equal(result.status, 'queued');
    const done = await waitForJob(methodJob, 'completed', 20000);
    assert.equal(done.deviceJobStatistics.succeededCount, 20);
  });

  const futureJob = 'conf-future-' + run;
  await step('JobClient.cancelJob of a job scheduled in the future', async () => {
    const start = new Date(Date.now() + 3600 * 1000);
    await jobs.scheduleTwinUpdate(futureJob, '*', { etag: '*', tags: { never: true } }, start, 600);
    await waitForJob(futureJob, 'scheduled', 10000);
    const { jobStatus: result } = await jobs.cancelJob(futureJob);
    assert.equal(result.status, 'cancelled');
    const { jobStatus: again } = await jobs.getJob(futureJob);
    assert.equal(again.status, 'cancelled');
  });

  await step('JobClient.createQuery lists jobs with filters and paging', async () => {
    const all = await queryAll(jobs.createQuery(undefined, undefined, 1), false);
    const ids = all.items.map((j) => j.jobId);
    for (const id of [twinJob, methodJob, futureJob]) {
      assert.ok(ids.includes(id), id + ' listed');
    }
    assert.ok(all.pages >= 3, 'one job per page');
    const completed = await queryAll(jobs.createQuery('scheduleDeviceMethod', 'completed'), false);
    assert.ok(completed.items.every((j) => j.type === 'scheduleDeviceMethod' && j.status === 'completed'));
    assert.ok(completed.items.some((j) => j.jobId === methodJob));
  });

  await step('devices.jobs query', async () => {
    const q = registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${methodJob}'`, 8);
    const { items, pages } = await queryAll(q, false);
    assert.equal(items.length, 20);
    assert.equal(pages, 3);
    for (const row of items) {
      assert.equal(row.jobId, methodJob);
      assert.equal(row.jobType, 'scheduleDeviceMethod');
      assert.equal(row.status, 'completed');
      assert.equal(row.outcome.deviceMethodResponse.status, 200);
      assert.deepEqual(row.outcome.deviceMethodResponse.payload, { version: '2.4.0' });
    }
  });

  await step('Client.invokeDeviceMethod', async () => {
    const { result } = await client.invokeDeviceMethod('canary-0002', { methodName: 'ping', payload: { n: 1 }, responseTimeoutInSeconds: 30 });
    assert.equal(result.status, 200);
    assert.deepEqual(result.payload, { n: 1 });
    await assert.rejects(client.invokeDeviceMethod('lab-bench-7', { methodName: 'ping', payload: {} }), (err) => {
      assert.equal(err.response && err.response.statusCode, 404, 'offline device gives 404');
      assert.match(String(err.responseBody), /DeviceNotOnline/);
      return true;
    });
  });

  await step('Registry.delete', async () => {
    await registry.delete(deviceId);
    await assert.rejects(registry.get(deviceId), (err) => err.response && err.response.statusCode === 404);
  });

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error('conformance:', err);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
