// Compiles the test contracts with the pinned npm solc (no compiler download) and writes
// artifacts.json next to this file. Run from anywhere: `node devstack/contracts/compile.mjs`.
//
// Output: { "_compiler": {solc, evmVersion, optimizer}, "<Contract>": {abi, bytecode,
// deployedBytecode}, ... }. Abstract contracts (no bytecode) are left out. Keys are sorted and
// source names are bare file names, so the same sources always give byte-identical output.
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const EXPECTED_SOLC = "0.8.28";
// paris: no PUSH0/MCOPY/transient storage, so the bytecode runs on any anvil hardfork setting.
const EVM_VERSION = "paris";
const OPTIMIZER = { enabled: true, runs: 200 };

const here = dirname(fileURLToPath(import.meta.url));

const version = solc.version();
if (!version.startsWith(EXPECTED_SOLC + "+")) {
  console.error(`expected solc ${EXPECTED_SOLC}, found ${version}; run npm install`);
  process.exit(1);
}

const sources = {};
for (const file of readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(here, file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: OPTIMIZER,
    evmVersion: EVM_VERSION,
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (problems.length > 0) process.exit(1);

const contracts = {};
for (const file of Object.keys(output.contracts).sort()) {
  for (const name of Object.keys(output.contracts[file]).sort()) {
    const c = output.contracts[file][name];
    if (!c.evm.bytecode.object) continue; // abstract
    if (name in contracts) throw new Error(`duplicate contract name ${name}`);
    contracts[name] = {
      source: file,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
  }
}

const artifacts = {
  _compiler: { solc: version, evmVersion: EVM_VERSION, optimizer: OPTIMIZER },
  ...contracts,
};
const target = join(here, "artifacts.json");
writeFileSync(target, JSON.stringify(artifacts, null, 2) + "\n");
console.log(`wrote ${target}: ${Object.keys(contracts).join(", ")}`);
