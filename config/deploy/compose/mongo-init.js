// The Compose cluster's replica set (docker-compose.yml, service mongo-init): made once, a no-op
// when it exists, then wait for a primary so the FastSock nodes start against a writable set.
// One member is enough here; add members (and their hosts) for a real replica set.
try {
  rs.status();
  print("replica set rs0 exists");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
  print("replica set rs0 initiated");
}
const deadline = Date.now() + 60000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) throw new Error("no primary within 60 s");
  sleep(500);
}
print("replica set rs0 has a primary");
