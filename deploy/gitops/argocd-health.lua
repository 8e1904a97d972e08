-- Argo CD health check for imageshare.dev/ImageShare.
--
-- Reads the conditions the operator writes (see docs/troubleshooting.md):
--   Ready        always present once the operator has reported; True only with reason InSync.
--   Reconciling  True only while work is under way (reasons Progressing, TransientError).
--   Stalled      True only when a person must act (every other reason except
--                AwaitingConsumer and Suspended).
-- and status.observedGeneration, the metadata.generation the conditions describe.
--
-- Mapping:
--   no status, no Ready condition yet, or observedGeneration behind  -> Progressing
--   Stalled=True                                                     -> Degraded
--   Reconciling=True                                                 -> Progressing
--   Ready=True                                                       -> Healthy
--   Ready=False, reason Suspended (spec.suspend, nothing failing)    -> Suspended
--   Ready=False, reason AwaitingConsumer or any other                -> Degraded
--
-- Argo CD runs custom health scripts without the Lua string library, so this script
-- uses only the base library (no string.* calls, no methods on strings).

local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the operator to process generation " .. generation
  else
    hs.message = "Waiting for the operator to process generation " .. generation
      .. " (status describes generation " .. observed .. ")"
  end
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the Ready condition"
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if ready.status == "False" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

if ready.status == "False" then
  -- AwaitingConsumer (a managed member status the operator may not set: the consumer must
  -- act, or consumer credentials must be given), or a reason newer than this script.
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
