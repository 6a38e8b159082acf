// The Hypercore side of benchmarks/anchor.py: tidings and Hypercore, side by side.
//
// anchor.py installs hypercore, corestore and @hyperswarm/secret-stream with npm
// into a folder of its own and runs this file with NODE_PATH set to that
// folder's node_modules. Every command prints one JSON line on stdout.
//
//   write DIR FEEDS PER_FEED SIZE BATCH KEYS   a Corestore of FEEDS cores, PER_FEED blocks
//                                              each, BATCH blocks per append; keys to KEYS
//   single DIR COUNT SIZE                      COUNT awaited appends of one block
//   serve DIR KEYS                             replicate those cores to every TCP connection
//                                              on 127.0.0.1 (port chosen by the OS) until
//                                              SIGTERM; prints {"port": P} once listening
//   read DIR KEYS PORT                         fetch every block of those cores from
//                                              127.0.0.1:PORT, store them, close, exit
//
// Connections are set up as Hyperswarm sets them up: a TCP socket wrapped in a
// Noise secret stream, handed to Corestore.replicate. Blocks are the payloads
// anchor.py gives tidings: SHA-256 output, so no layer can compress them.
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const net = require('net')
const { performance } = require('perf_hooks')

const Corestore = require('corestore')
const SecretStream = require('@hyperswarm/secret-stream')

const HOST = '127.0.0.1'
// A reader that has not finished in 10 minutes is stuck, not slow: give up.
const READ_TIMEOUT_MS = 600 * 1000

function report (fields) {
  process.stdout.write(JSON.stringify(fields) + '\n')
}

// Block i: SHA-256("anchor i 0") || SHA-256("anchor i 1") || ..., cut to size
// bytes; anchor.py's anchor_payload makes the same bytes.
function payload (i, size) {
  const parts = []
  for (let k = 0; parts.length * 32 < size; k++) {
    parts.push(crypto.createHash('sha256').update(`anchor ${i} ${k}`).digest())
  }
  return Buffer.concat(parts).subarray(0, size)
}

function readKeys (file) {
  return JSON.parse(fs.readFileSync(file, 'utf8')).map((hex) => Buffer.from(hex, 'hex'))
}

async function openCores (store, keys) {
  const cores = keys.map((key) => store.get({ key }))
  await Promise.all(cores.map((core) => core.ready()))
  return cores
}

async function write (dir, feeds, perFeed, size, batch, keysFile) {
  const store = new Corestore(dir)
  await store.ready()
  const blocks = []
  for (let i = 0; i < perFeed; i++) blocks.push(payload(i, size))
  const keys = []
  let seconds = 0
  for (let f = 0; f < feeds; f++) {
    const core = store.get({ name: `feed-${f}` })
    await core.ready()
    const start = performance.now()
    for (let first = 0; first < perFeed; first += batch) {
      await core.append(blocks.slice(first, first + batch))
    }
    seconds += (performance.now() - start) / 1000
    keys.push(core.key.toString('hex'))
  }
  await store.close()
  fs.writeFileSync(keysFile, JSON.stringify(keys))
  report({ entries: feeds * perFeed, seconds })
}

async function single (dir, count, size) {
  const store = new Corestore(dir)
  const core = store.get({ name: 'single' })
  await core.ready()
  const blocks = []
  for (let i = 0; i <= count; i++) blocks.push(payload(i, size))
  await core.append(blocks[0]) // the core's first block: not timed, as tidings' first publish
  const start = performance.now()
  for (let i = 1; i <= count; i++) await core.append(blocks[i])
  const seconds = (performance.now() - start) / 1000
  await store.close()
  report({ entries: count, seconds })
}

async function serve (dir, keysFile) {
  const store = new Corestore(dir)
  await openCores(store, readKeys(keysFile)) // loaded up front, as a serving peer has them
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    const stream = new SecretStream(false, socket)
    stream.on('error', () => {}) // a reader hangs up when it has everything
    store.replicate(stream)
  })
  server.listen(0, HOST, () => report({ port: server.address().port }))
  const stop = async () => {
    server.close()
    await store.close()
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

async function read (dir, keysFile, port) {
  setTimeout(() => {
    process.stderr.write('hypercore_driver: read timed out\n')
    process.exit(3)
  }, READ_TIMEOUT_MS).unref()
  const store = new Corestore(dir)
  const cores = await openCores(store, readKeys(keysFile))
  // Until these are called, update() waits for a peer rather than answering from
  // what this (empty) store knows.
  const searches = cores.map((core) => core.findingPeers())
  const socket = net.connect(port, HOST)
  socket.setNoDelay(true)
  const stream = new SecretStream(true, socket)
  stream.on('error', (err) => {
    process.stderr.write(`hypercore_driver: ${err.message}\n`)
    process.exit(1)
  })
  store.replicate(stream)
  const lengths = await Promise.all(cores.map(async (core, i) => {
    await core.update({ wait: true })
    searches[i]()
    await core.download({ start: 0, end: core.length }).done()
    return core.contiguousLength
  }))
  stream.removeAllListeners('error')
  stream.on('error', () => {})
  await store.close() // flushes what was downloaded to storage
  stream.destroy()
  report({ entries: lengths.reduce((a, b) => a + b, 0) })
  process.exit(0)
}

const COMMANDS = {
  write: (a) => write(a[0], +a[1], +a[2], +a[3], +a[4], a[5]),
  single: (a) => single(a[0], +a[1], +a[2]),
  serve: (a) => serve(a[0], a[1]),
  read: (a) => read(a[0], a[1], +a[2])
}

const [command, ...args] = process.argv.slice(2)
if (!COMMANDS[command]) {
  process.stderr.write(`hypercore_driver: unknown command ${command}; see the file's header\n`)
  process.exit(2)
}
COMMANDS[command](args).catch((err) => {
  process.stderr.write(`hypercore_driver: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
