-- Argo CD health check for tenancy.dev/Tenant (argocd-cm key
-- resource.customizations.health.tenancy.dev_Tenant). Lua 5.1 as Argo CD's gopher-lua runs it:
-- reads the global `obj`, returns hs with hs.status and hs.message.
local hs = {}

local function condition(conds, t)
  if conds == nil then return nil end
  for _, c in ipairs(conds) do
    if c.type == t then return c end
  end
  return nil
end

-- Reasons that need someone to act (the operator will not get past them by waiting).
local degraded = {
  ActivationRefused = true, TransitionRefused = true, TransitionFailed = true, InvalidSpec = true,
  Conflict = true, ApplyFailed = true, PolicyDenied = true, PlacementFailed = true,
  CapacityExceeded = true, GroupRefused = true, InvalidPlan = true, PlanNotFound = true
}

local st = obj.status
local gen = obj.metadata and obj.metadata.generation
if st == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to report a status"
  return hs
end
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to observe generation " .. tostring(gen) ..
    " (status is for " .. tostring(st.observedGeneration or "none") .. ")"
  return hs
end

local ready = condition(st.conditions, "Ready")
if ready == nil or (gen ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. tostring(gen)
  return hs
end

local state = st.state or "unknown"
if obj.spec ~= nil and obj.spec.state ~= nil and obj.spec.state ~= state then
  state = state .. " -> " .. obj.spec.state -- a transition asked for and not reached
end
if ready.status == "True" then
  if st.state == "Suspended" or st.state == "Archived" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = state .. ": " .. (ready.message or "")
  return hs
end

local reason = ready.reason or ""
if degraded[reason] then
  hs.status = "Degraded"
  hs.message = state .. ": " .. reason .. ": " .. (ready.message or "")
  return hs
end
-- NotConverged and the like: degraded when a condition behind it failed for good.
for _, c in ipairs(st.conditions or {}) do
  if c.type ~= "Ready" and c.status == "False" and degraded[c.reason or ""] then
    hs.status = "Degraded"
    hs.message = state .. ": " .. c.type .. " " .. c.reason .. ": " .. (c.message or "")
    return hs
  end
end
local progressing = condition(st.conditions, "Progressing")
hs.status = "Progressing"
if progressing ~= nil and progressing.status == "True" then
  hs.message = state .. ": " .. (progressing.message or "")
else
  hs.message = state .. ": " .. reason .. ": " .. (ready.message or "")
end
return hs
