// peer-sdk.js N MESSAGE_FILE DESTINATION MARK [parallel|sequential] - the peer of tests/bench/run.sh: the SAP
// Cloud SDK for JavaScript mail client (@sap-cloud-sdk/mail-client 3.x) sends N messages
// through the BTP emulator in one sendMail() call, as an application would: destination
// lookup (token, Find), connectivity token, SOCKS5 0x80 through the proxy, SMTP with
// nodemailer (pooled connection, STARTTLS, AUTH). The body is MESSAGE_FILE's body; each
// message gets Message-Id <I.MARK> so run.sh can count what arrived. "parallel" (the SDK's
// default) hands all N to nodemailer's pool at once; "sequential" is sdkOptions.parallel=false.
//
// Environment: VCAP_SERVICES (the emulator's vcap.json), NODE_EXTRA_CA_CERTS (its CA),
// NODE_PATH (where npm installed the SDK). Prints one JSON line:
// {"version","sent","failed","seconds","first_error"}.
'use strict';
const fs = require('fs');

async function main() {
  const [n, messageFile, destinationName, mark, mode] = process.argv.slice(2);
  const options = mode === 'sequential' ? { sdkOptions: { parallel: false } } : undefined;
  const { sendMail } = require('@sap-cloud-sdk/mail-client');
  const version = require('@sap-cloud-sdk/mail-client/package.json').version;
  const raw = fs.readFileSync(messageFile, 'utf8');
  const text = raw.slice(raw.indexOf('\n\n') + 2);
  const mails = Array.from({ length: Number(n) }, (_, i) => ({
    from: 'sender@client.test',
    to: 'user@corp.example',
    subject: `btprelay bench peer ${i}`,
    messageId: `<${i}.${mark}>`,
    text
  }));
  const start = process.hrtime.bigint();
  const responses = await sendMail({ destinationName }, mails, options);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const ok = responses.filter(r => r && Array.isArray(r.accepted) && r.accepted.length > 0);
  const bad = responses.find(r => !(r && Array.isArray(r.accepted) && r.accepted.length > 0));
  console.log(JSON.stringify({
    version,
    mode: mode === 'sequential' ? 'sequential' : 'parallel',
    sent: ok.length,
    failed: responses.length - ok.length,
    seconds,
    first_error: bad ? String(bad.response || 'rejected') : null
  }));
}

main().catch(err => {
  console.log(JSON.stringify({ error: String(err && err.message ? err.message : err) }));
  process.exit(1);
});
