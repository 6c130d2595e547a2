"""Every Redis key the gateway writes, under one prefix. No other module spells a key.

Addresses in keys are lowercase hex; tx hashes are the canonical lowercase form.

Hash slots (Redis Cluster): every key one Lua script or MULTI touches shares a slot. Money and
project keys of a wallet carry the wallet's hash tag ``{w:<wallet>}``, so a credit, a burn, a
reversal or a project record is one single-slot script. A few facts must stay global, findable
without knowing the wallet, and so live in slots of their own: a project's owner, a name's
holder, the set of wallets, the metered projects and the re-check queue, and the payers who
credited a tx. None of them is written inside a money script; each is written in the order that
is safe when the two writes land on different nodes and one of them is lost
(``docs/ARCHITECTURE.md``, Redis topologies):

- an index that points at a fact (a project's owner, a wallet in the wallets set, a project in
  the metered set, a payer of a tx, a queued re-check) is written *before* the fact: a pointer
  whose fact never arrived is read as absent;
- a permanent name hold is written *after* the project record (until then the deploy's own
  claim with a TTL holds it, and CreateOS itself refuses a second create of the name).

Payer binding: the claim on a payment is per ``(chain, tx, payer)`` in the payer's slot. That is
sound because crediting counts only Transfer logs whose ``from`` is the authenticated wallet
(``payments.verify.count_payment``): one log has one ``from``, so two payers' claims on one tx
count disjoint logs, and one payer's claim counts each of its logs once.
"""

from __future__ import annotations

from dataclasses import dataclass


def wallet_tag(wallet: str) -> str:
    """The hash tag of a wallet's slot."""
    return "{w:" + wallet.lower() + "}"


def slot_tag(key: str) -> str:
    """What Redis Cluster hashes for ``key``: the first non-empty ``{...}``, else the key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str = "gw:"

    def _w(self, wallet: str) -> str:
        return f"{self.prefix}{wallet_tag(wallet)}:"

    # --- auth and abuse -------------------------------------------------------------------
    def nonce(self, wallet: str, nonce: str) -> str:
        """Set once per (wallet, nonce) with a TTL longer than the auth window."""
        return f"{self._w(wallet)}nonce:{nonce}"

    def rate(self, client_ip: str, wallet_header: str) -> str:
        """GCRA state (theoretical arrival time, ms) for one (IP, X-Wallet-Address); in the
        wallet's slot, so ``admit`` consumes the nonce in the same script."""
        return f"{self._w(wallet_header)}rate:{client_ip}"

    def failed_auth(self, client_ip: str) -> str:
        """GCRA state of one client IP's budget of failed authentications (any wallet)."""
        return f"{self.prefix}authfail:{client_ip}"

    def no_code(self, chain_id: int, address: str) -> str:
        """Short-lived mark: ``address`` had no code on the chain (EIP-1271 impossible).
        A fact about the chain, never about a signature."""
        return f"{self.prefix}nocode:{chain_id}:{address.lower()}"

    # --- payments ------------------------------------------------------------------------
    def claim(self, chain_id: int, tx_hash: str, payer: str) -> str:
        """Permanent claim of one payer's transfers in a payment tx (the payer-binding rule in
        the module docstring): ``pending:<token>`` while verifying, ``used`` after."""
        return f"{self._w(payer)}claim:{chain_id}:{tx_hash}"

    def payment(self, chain_id: int, tx_hash: str, payer: str) -> str:
        """Hash: the recorded verification of one payer's credited payment."""
        return f"{self._w(payer)}payment:{chain_id}:{tx_hash}"

    def tx_payers(self, chain_id: int, tx_hash: str) -> str:
        """Global index: the wallets that claimed a payment in a tx (written before the claim's
        credit; a payer here with no credited record is read as absent)."""
        return f"{self.prefix}txpayers:{chain_id}:{tx_hash}"

    def wallet_payments(self, wallet: str) -> str:
        """List of ``chain_id:tx`` credited to a wallet, newest first."""
        return f"{self._w(wallet)}payments"

    def recheck_queue(self) -> str:
        """Global sorted set of ``chain_id:tx:wallet`` credited before finality; score = block
        number. Written outside the credit script, before it and again after it."""
        return f"{self.prefix}recheck"

    def settlement(self, chain_id: int, token: str, payer: str, nonce_hex: str) -> str:
        """Hash, permanent: one EIP-3009 authorization's settlement (claim holder, the signed
        tx and its hash before it is sent, the tx that credits it, its state)."""
        return f"{self.prefix}settle:{chain_id}:{token.lower()}:{payer.lower()}:{nonce_hex.lower()}"

    def challenge(self, challenge_id: str) -> str:
        """An MPP challenge that was used: the payer who used it (expires after the challenge)."""
        return f"{self.prefix}challenge:{challenge_id}"

    def settlements_in_flight(self) -> str:
        """Sorted set of settlement keys whose signed tx is not finished; score = recorded ms
        (the sweeper re-sends those that stay unmined)."""
        return f"{self.prefix}settle:in-flight"

    def settler_nonce(self, chain_id: int, settler: str) -> str:
        """The next account nonce the settler may sign with on a chain (shared by processes)."""
        return f"{self.prefix}settler:{chain_id}:{settler.lower()}:nonce"

    # --- ledger --------------------------------------------------------------------------
    def balance(self, wallet: str) -> str:
        """Integer micro-USD balance."""
        return f"{self._w(wallet)}balance"

    def ledger(self, wallet: str) -> str:
        """Append-only list of JSON ledger entries (RPUSH), oldest first."""
        return f"{self._w(wallet)}ledger"

    def ledger_seq(self, wallet: str) -> str:
        """Counter numbering one wallet's ledger entries (1, 2, ...), in the wallet's slot."""
        return f"{self._w(wallet)}ledger:seq"

    def ledger_guard(self, wallet: str, name: str) -> str:
        """Marks a once-only ledger change of a wallet (``Ledger.apply(once_key=name)``)."""
        return f"{self._w(wallet)}guard:{name}"

    def wallets(self) -> str:
        """Global set of every wallet that has a ledger (added before its first entry)."""
        return f"{self.prefix}wallets"

    # --- projects, ownership, metering ---------------------------------------------------
    def project_owner(self, project_id: str) -> str:
        """Global index: the wallet that owns a project (written before its record)."""
        return f"{self.prefix}owner:{project_id}"

    def project(self, wallet: str, project_id: str) -> str:
        """Hash in the owner's slot: wallet, uniqueName, displayName, status, createdAt,
        deployments."""
        return f"{self._w(wallet)}project:{project_id}"

    def wallet_projects(self, wallet: str) -> str:
        """Set of project ids owned by a wallet."""
        return f"{self._w(wallet)}projects"

    def active_projects(self) -> str:
        """Global set of project ids that burn credits (added before the record says so)."""
        return f"{self.prefix}projects:active"

    def metered_hour(self, wallet: str, project_id: str) -> str:
        """Last hour index (Unix hours) burned for a project, in its owner's slot."""
        return f"{self._w(wallet)}metered:{project_id}"

    def metering_lease(self) -> str:
        """Leader lease of the metering loop (holder token, PX expiry)."""
        return f"{self.prefix}metering:lease"

    def recheck_lease(self) -> str:
        """Leader lease of the payment re-check loop (holder token, PX expiry)."""
        return f"{self.prefix}recheck:lease"

    # --- deploy flow ---------------------------------------------------------------------
    def deploy_attempt(self, wallet: str, unique_name: str) -> str:
        """Hash: durable progress of one wallet's deploy of one name (half-made projects)."""
        return f"{self._w(wallet)}deploy:{unique_name.lower()}"

    def deploy_lock(self, wallet: str, unique_name: str) -> str:
        return f"{self._w(wallet)}deploylock:{unique_name.lower()}"

    def idempotency(self, wallet: str, key: str) -> str:
        """The first answer given for an Idempotency-Key, 24 h."""
        return f"{self._w(wallet)}idem:{key}"

    def name_owner(self, unique_name: str) -> str:
        """Global: the wallet that holds a uniqueName through this gateway."""
        return f"{self.prefix}name:{unique_name.lower()}"

    # --- reconciliation and ledger compaction (docs/PAYMENTS.md sections 8-9) -------------
    # Kept in their own section (appended last) so the hash-tag work on the keys above can
    # move them without touching these. None of these is touched by a script together with a
    # wallet's money keys, except ``ledger`` itself (compaction).
    def reconcile_lease(self) -> str:
        """Leader lease of the reconciler loop (holder token, PX expiry)."""
        return f"{self.prefix}reconcile:lease"

    def reconcile_checkpoints(self) -> str:
        """Hash ``<chain_id>:<token>`` -> the last block whose Transfer logs were scanned."""
        return f"{self.prefix}reconcile:checkpoints"

    def reconcile_found(self) -> str:
        """Hash ``<chain_id>:<tx>:<sender>`` -> JSON of an unclaimed transfer still to settle
        (chain, token, block, first seen); removed once credited or decided."""
        return f"{self.prefix}reconcile:found"

    def reconcile_audited(self) -> str:
        """Hash wallet -> how many of its oldest credited payments were checked on-chain."""
        return f"{self.prefix}reconcile:audited"

    def reconcile_summary(self) -> str:
        """JSON of what the last reconciliation pass found and did (operator CLI)."""
        return f"{self.prefix}reconcile:last"

    def reconcile_action(self, action: str, ref: str) -> str:
        """Once-only guard of one reconciler ledger entry (an adoption)."""
        return f"{self.prefix}reconcile:done:{action}:{ref}"
