-- Fold the oldest entries of a wallet's ledger into one checkpoint entry, atomically
-- (gateway/ledger.py Ledger.compact; the entries were archived by the caller first).
-- KEYS: ledger
-- ARGV: n (entries folded, a leading checkpoint included), seq of the first, seq of the n-th,
--       ts, archive chunk name, sha256 of the chunk
-- The checkpoint's amount is the sum of what it replaces and its balance the n-th entry's, so
-- sum(entries) == balance and the running-balance chain both still hold afterwards.
-- Returns {'compacted', entries covered by the checkpoint} | {'changed'} (the head is not what
-- the caller archived: nothing written) | {'inconsistent'} (the folded entries do not sum to
-- their own running balance: never hidden under a checkpoint).
local n = tonumber(ARGV[1])
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then
  return {'changed'}
end
local first = cjson.decode(head[1])
local last = cjson.decode(head[n])
if string.format('%d', first.seq) ~= ARGV[2] or string.format('%d', last.seq) ~= ARGV[3] then
  return {'changed'}
end
local sum, count, chunks, from_seq = 0, 0, 0, first.seq
for _, raw in ipairs(head) do
  local entry = cjson.decode(raw)
  sum = sum + tonumber(entry.amount)
  if entry.kind == 'checkpoint' then
    count = count + tonumber(entry.count)
    chunks = chunks + tonumber(entry.chunks)
    from_seq = entry.from_seq
  else
    count = count + 1
  end
end
if sum ~= tonumber(last.balance) then
  return {'inconsistent'}
end
local checkpoint = cjson.encode({
  seq = last.seq, ts = tonumber(ARGV[4]), kind = 'checkpoint',
  amount = string.format('%d', sum), balance = last.balance,
  ref = 'seq:' .. string.format('%d', from_seq) .. '-' .. string.format('%d', last.seq),
  reason = string.format('%d', count) .. ' entries compacted; archived up to ' .. ARGV[5],
  from_seq = from_seq, count = count, chunks = chunks + 1, archive = ARGV[5], sha256 = ARGV[6],
})
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('LPUSH', KEYS[1], checkpoint)
return {'compacted', count}
