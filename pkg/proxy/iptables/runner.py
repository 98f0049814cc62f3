"""The iptables binaries the proxier runs: which backend, restore, save, jump rules.

Backend detection follows upstream's iptables-wrapper: a kubelet hint chain (KUBE-IPTABLES-HINT
or KUBE-KUBELET-CANARY) in iptables-nft's mangle table means nft, in iptables-legacy's tables
means legacy; otherwise whichever backend holds more rules wins, nft on a tie.

Every command can be prefixed (e.g. `ip netns exec NAME`) so a benchmark can drive a network
namespace from outside; the daemon runs inside its node's namespace and uses no prefix.
"""
from __future__ import annotations

import asyncio
import logging
import re
import shutil
from dataclasses import dataclass, field
from typing import Sequence

from ... import proc
from .rules import JumpRule

log = logging.getLogger(__name__)

_HINT = re.compile(r"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)\b", re.M)
_RULE = re.compile(r"^-", re.M)
_CHAIN = re.compile(r"^:(\S+)", re.M)


class IPTablesError(Exception):
    """An iptables command failed; the message is one line for people."""


@dataclass
class Executor:
    """Runs commands, optionally prefixed to enter another network namespace."""
    prefix: Sequence[str] = ()

    async def run(self, args: Sequence[str], *, input: bytes | None = None, check: bool = True,
                  timeout: float = 120.0) -> proc.Result:
        return await proc.run([*self.prefix, *args], input=input, check=check, timeout=timeout)


async def _count(ex: Executor, args: list[str]) -> tuple[int, int]:
    """(hint chains, rule lines) in the output of an *-save command; (0, 0) if it cannot run."""
    if not shutil.which(args[0]):
        return 0, 0
    try:
        res = await ex.run(args, check=False, timeout=60)
    except proc.CommandError:
        return 0, 0
    text = res.text
    return len(_HINT.findall(text)), len(_RULE.findall(text))


async def detect_backend(ex: Executor) -> str:
    """"nft" or "legacy": the iptables backend the host already uses."""
    nft_hints = sum([(await _count(ex, [b, "-t", "mangle"]))[0]
                     for b in ("iptables-nft-save", "ip6tables-nft-save")])
    if nft_hints:
        return "nft"
    legacy = [await _count(ex, [b]) for b in ("iptables-legacy-save", "ip6tables-legacy-save")]
    if sum(h for h, _ in legacy):
        return "legacy"
    nft = [await _count(ex, [b]) for b in ("iptables-nft-save", "ip6tables-nft-save")]
    legacy_rules, nft_rules = sum(r for _, r in legacy), sum(r for _, r in nft)
    return "legacy" if legacy_rules > nft_rules else "nft"


@dataclass
class IPTables:
    """One backend's iptables, iptables-save and iptables-restore."""
    backend: str = "nft"
    executor: Executor = field(default_factory=Executor)

    @classmethod
    async def detect(cls, executor: Executor | None = None, backend: str | None = None) -> "IPTables":
        ex = executor or Executor()
        chosen = backend or await detect_backend(ex)
        ipt = cls(chosen, ex)
        if not shutil.which(ipt.binary("iptables")):
            raise IPTablesError(f"{ipt.binary('iptables')} not found: install the iptables package")
        return ipt

    def binary(self, name: str) -> str:
        """iptables / iptables-save / iptables-restore of this backend."""
        suffix = name[len("iptables"):]
        return f"iptables-{self.backend}{suffix}"

    async def run(self, *args: str, check: bool = True) -> proc.Result:
        return await self.executor.run([self.binary("iptables"), "-w", "5", *args], check=check)

    async def restore(self, text: str) -> None:
        """iptables-restore --noflush --counters; raises IPTablesError naming the failing line."""
        data = text.encode()
        try:
            await self.executor.run([self.binary("iptables-restore"), "-w", "5", "--noflush", "--counters"],
                                    input=data, timeout=600)
        except proc.CommandError as e:
            raise IPTablesError(_restore_error(e, text)) from None

    async def save(self, table: str) -> str:
        try:
            return (await self.executor.run([self.binary("iptables-save"), "-t", table], timeout=300)).text
        except proc.CommandError as e:
            raise IPTablesError(str(e)) from None

    async def chains(self, table: str) -> set[str]:
        """Names of the chains in a table (from iptables-save)."""
        return set(_CHAIN.findall(await self.save(table)))

    async def missing_jumps(self, jumps: Sequence[JumpRule]) -> list[JumpRule]:
        """The jump rules not present in their built-in chains (upstream EnsureRule's check). Reads
        each built-in chain once (`iptables -S CHAIN`, in parallel); a rule whose text is not in the
        listing is confirmed with `iptables -C` before it counts as missing."""
        by_chain: dict[tuple[str, str], list[JumpRule]] = {}
        for j in jumps:
            by_chain.setdefault((j.table, j.src), []).append(j)

        async def listing(table: str, chain: str) -> str:
            return (await self.run("-t", table, "-S", chain)).text

        keys = list(by_chain)
        try:
            listings = await asyncio.gather(*(listing(t, c) for t, c in keys))
        except proc.CommandError as e:
            raise IPTablesError(str(e)) from None
        missing = []
        for (table, chain), text in zip(keys, listings):
            present = {line.strip() for line in text.splitlines()}
            for j in by_chain[(table, chain)]:
                if format_rule(chain, j.args()) in present:
                    continue
                # a rule jumping to the same chain in another canonical form: let iptables decide
                similar = any(line.endswith(f"-j {j.dst}") for line in present)
                if not similar or (await self.run("-t", table, "-C", chain, *j.args(), check=False)).returncode != 0:
                    missing.append(j)
        return missing

    async def ensure_jumps(self, jumps: Sequence[JumpRule]) -> int:
        """Insert the missing jump rules at the top of their chains; returns how many."""
        missing = await self.missing_jumps(jumps)
        for j in missing:
            try:
                await self.run("-t", j.table, "-I", j.src, *j.args())
            except proc.CommandError as e:
                raise IPTablesError(str(e)) from None
        return len(missing)

    async def delete_jumps(self, jumps: Sequence[JumpRule]) -> None:
        """Remove jump rules (ignoring ones that are not there)."""
        for j in jumps:
            while (await self.run("-t", j.table, "-D", j.src, *j.args(), check=False)).returncode == 0:
                pass


def format_rule(chain: str, args: Sequence[str], op: str = "-A") -> str:
    """A rule as iptables -S / iptables-restore write it (arguments with spaces quoted)."""
    parts = [f"{op} {chain}"]
    for a in args:
        parts.append(f'"{a}"' if " " in a else a)
    return " ".join(parts)


def _restore_error(e: proc.CommandError, text: str) -> str:
    err = (e.stderr or b"").decode(errors="replace")
    m = re.search(r"line:? (\d+)", err)
    first = err.strip().splitlines()[0] if err.strip() else str(e)
    if m:
        n = int(m.group(1))
        lines = text.splitlines()
        if 0 < n <= len(lines):
            return f"iptables-restore failed at line {n} ({lines[n - 1][:200]!r}): {first}"
    return f"iptables-restore failed: {first}"
