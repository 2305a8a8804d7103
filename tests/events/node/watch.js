// Prints one JSON line per chokidar event under the directory given, "ready" once watching.
const chokidar = require("chokidar");
const root = process.argv[2];
const watcher = chokidar.watch(root, { ignoreInitial: true, usePolling: false });
watcher.on("all", (event, path) => {
  process.stdout.write(JSON.stringify({ event, path: require("path").relative(root, path) }) + "\n");
});
watcher.on("ready", () => process.stdout.write(JSON.stringify({ event: "ready" }) + "\n"));
process.on("SIGTERM", () => watcher.close().then(() => process.exit(0)));
