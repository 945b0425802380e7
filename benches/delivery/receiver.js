// The delivery benchmark's webhook receiver: answers every POST with 200 at once (keep-alive),
// counts requests, and for bodies whose event payload carries "t" (the inserting
// transaction's clock_timestamp in ms, just before its commit) records commit -> receipt.
// GET /stats returns {count, p50_ms, p99_ms}; POST /reset clears. Loopback only.
const http = require('http');
const port = Number(process.argv[2]);
let count = 0;
let lat = [];
const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor(a.length * p))] : null);
http
  .createServer((req, res) => {
    if (req.url === '/stats') {
      const s = [...lat].sort((x, y) => x - y);
      res.end(JSON.stringify({ count, p50_ms: pct(s, 0.5), p99_ms: pct(s, 0.99) }));
      return;
    }
    if (req.url === '/reset') {
      count = 0;
      lat = [];
      res.end('ok');
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const now = Date.now();
      count++;
      if (req.url === '/latency') {
        const t = JSON.parse(Buffer.concat(chunks)).data.t;
        if (t) lat.push(now - t);
      }
      res.end('ok');
    });
  })
  .listen(port, '127.0.0.1');
