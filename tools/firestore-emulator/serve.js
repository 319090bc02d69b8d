// Starts the Firestore emulator on 127.0.0.1 only (the package's own start() binds 0.0.0.0).
//
//   node serve.js [PORT]     PORT 0 (the default) picks a free port
//
// Prints one line, `listening 127.0.0.1:<port>`, once the gRPC server accepts connections, and
// runs until SIGTERM or SIGINT (or until its stdin closes, so it never outlives the test that
// started it). It keeps everything in memory: a restart starts empty.
"use strict";

const { FirestoreServer } = require("@firestore-emulator/server");
const grpc = require("@grpc/grpc-js");

const port = Number(process.argv[2] || 0);
const emulator = new FirestoreServer();

emulator.server.bindAsync(
  `127.0.0.1:${port}`,
  grpc.ServerCredentials.createInsecure(),
  (error, bound) => {
    if (error) {
      console.error(`cannot listen on 127.0.0.1:${port}: ${error.message}`);
      process.exit(1);
    }
    process.stdout.write(`listening 127.0.0.1:${bound}\n`);
    // Only once listening, so `serve.js 0 </dev/null` still shows that it starts.
    if (process.stdin.readableEnded) stop();
    process.stdin.on("end", stop);
  },
);

function stop() {
  emulator.stop();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.resume();
