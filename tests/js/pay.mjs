// Pays the gateway with a stock npm client, unchanged: `@x402/fetch` (+ `@x402/evm`) or `mppx`.
// Usage: node tests/js/pay.mjs <x402|mppx> <url> <chain-name> <body-file>
// The payer's key comes from PAYER_KEY. Prints one JSON line: the answer's status, headers
// and body, and every request the client sent (method and the payment headers it carried).
import { readFileSync } from "node:fs";
import { privateKeyToAccount } from "viem/accounts";

const [client, url, chain, bodyFile] = process.argv.slice(2);
const account = privateKeyToAccount(process.env.PAYER_KEY);
const body = readFileSync(bodyFile);
const sent = [];

// The caller's fetch, under the client: records what the client sends.
async function recordingFetch(input, init) {
  const request = new Request(input, init);
  sent.push({
    method: request.method,
    paymentSignature: request.headers.get("payment-signature"),
    authorization: request.headers.get("authorization"),
  });
  return fetch(request);
}

let pay;
if (client === "x402") {
  const { wrapFetchWithPayment, x402Client } = await import("@x402/fetch");
  const { ExactEvmScheme } = await import("@x402/evm/exact/client");
  const { toClientEvmSigner } = await import("@x402/evm");
  const x402 = new x402Client();
  x402.register("eip155:*", new ExactEvmScheme(toClientEvmSigner(account)));
  // The default cap is $1 a payment; a deploy may cost more (docs/PAYMENTS.md).
  x402.setSpendControls({ maxAmountPerPayment: "$20" });
  pay = wrapFetchWithPayment(recordingFetch, x402);
} else if (client === "mppx") {
  const { Mppx } = await import("mppx/client");
  const { evm } = await import("mppx/evm/client");
  // mppx takes the token's EIP-712 domain from its own config, never from the 402.
  const mppx = Mppx.create({
    methods: [evm({ account, authorization: { name: "USD Coin", version: "2" } })],
    fetch: recordingFetch,
    polyfill: false,
  });
  pay = mppx.fetch;
} else {
  throw new Error(`unknown client ${client}`);
}

let answer;
try {
  const response = await pay(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-payment-chain": chain },
    body,
  });
  answer = {
    status: response.status,
    headers: Object.fromEntries(response.headers.entries()),
    body: await response.text(),
  };
} catch (error) {
  answer = { error: String(error && error.stack ? error.stack : error) };
}
console.log(JSON.stringify({ ...answer, sent }));
