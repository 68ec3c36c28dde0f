-- The requests of one benchmark scenario, for wrk (https://github.com/wg/wrk).
--
--   wrk -t1 -c16 -d10s --latency -s bench/wrk/fhir.lua http://127.0.0.1:8080 \
--       -- MODE DATAFILE [TOKEN] [PREFIX] [SEED] [MAX]
--
-- MODE:
--   read     GET /fhir/Patient/{random id}
--   search   GET /fhir/Observation?patient=X&code=http://loinc.org|Y&_sort=-date
--            (X, Y: a pair that exists in the data)
--   include  the same search with _include=Observation:performer&_include=Observation:encounter
--   chain    GET /fhir/Observation?patient.identifier=urn:demo:mrn|M&code=http://loinc.org|Y
--   history  GET /fhir/Patient/{random id}/_history
--   everything  GET /fhir/Patient/{random id}/$everything: the first page of the
--            patient's record (50 of ~60 resources, with the total and the resources
--            they refer to)
--   crud     per 10 requests: 4 reads of a Patient, 1 create (POST), 1 create by update
--            (PUT to a new id), 1 update (PUT) of such a resource, 1 read of an Observation
--            this run created, 1 delete of an updated one, 1 more read; a resource is
--            updated only after its create was answered, and deleted only after its update
--   ingest   POST /fhir: a transaction Bundle of 1 Patient + 20 Observations
--   mix      the soak: read 40%, search 20%, include 10%, chain 10%, history 10%, crud 10%
--
-- DATAFILE: lines "p PATIENT_ID MRN" and "s PATIENT_ID LOINC_CODE" (bench/run.py writes it).
-- TOKEN: a bearer token ("-" for none). PREFIX: makes the ids this run writes unique.
-- SEED: random seed (each thread adds its number). MAX: each thread stops after this
-- many responses (0 or absent: only wrk's -d duration bounds the run).
--
-- done() prints one line "WRK_RESULT {json}" with the counts, the latency percentiles
-- (microseconds) and, for the modes that read the responses (crud, ingest, mix), the count
-- of each HTTP status.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

local patients, mrns, pairs_ = {}, {}, {}
local plain, with_body
local mode, prefix
local step, serial, answered, max_answers = 0, 0, 0, 0
local created, updated, posted = {}, {}, {}
local stage = {}
statuses = {}

local LOINC = "http%3A%2F%2Floinc.org%7C"
local MRN_SYSTEM = "urn%3Ademo%3Amrn%7C"

local function load_data(path)
   local file = assert(io.open(path, "r"), "cannot open " .. path)
   for line in file:lines() do
      local kind, a, b = line:match("^(%a) (%S+) (%S+)$")
      if kind == "p" then
         patients[#patients + 1] = a
         mrns[#mrns + 1] = b
      elseif kind == "s" then
         pairs_[#pairs_ + 1] = { a, b }
      end
   end
   file:close()
   assert(#patients > 0 and #pairs_ > 0, "no data in " .. path)
end

-- wrk.format adds Host and Content-Length to the table it is given: give it a copy
local function format(method, path, base, body)
   local headers = {}
   for k, v in pairs(base) do headers[k] = v end
   return wrk.format(method, path, headers, body)
end

-- a GET is the same bytes as wrk.format's around its path, split once at init: the load
-- generator shares the two cores with the server, and its CPU per request is theirs less
local get_head, get_tail

local function get(path)
   return get_head .. path .. get_tail
end

local function send(method, path, body)
   return format(method, path, with_body, body)
end

function init(args)
   mode = args[1]
   load_data(args[2])
   local token = args[3]
   prefix = (args[4] or "b") .. "-" .. tid
   math.randomseed(tonumber(args[5] or "1") * 1000 + tid)
   plain = { Accept = "application/fhir+json" }
   with_body = { Accept = "application/fhir+json", ["Content-Type"] = "application/fhir+json" }
   if token and token ~= "-" and token ~= "" then
      plain["Authorization"] = "Bearer " .. token
      with_body["Authorization"] = "Bearer " .. token
   end
   local marker = "/@PATH@"
   local template = format("GET", marker, plain)
   local at = assert(template:find(marker, 1, true), "no path in the request template")
   get_head, get_tail = template:sub(1, at - 1), template:sub(at + #marker)
   max_answers = tonumber(args[6] or "0")
   if mode == "crud" or mode == "ingest" or mode == "mix" or max_answers > 0 then
      response = on_response
   end
end

local function random_patient()
   local n = math.random(#patients)
   return patients[n], mrns[n]
end

local function read()
   return get("/fhir/Patient/" .. (random_patient()))
end

local function search()
   local pair = pairs_[math.random(#pairs_)]
   return get("/fhir/Observation?patient=" .. pair[1] .. "&code=" .. LOINC .. pair[2]
      .. "&_sort=-date")
end

local function include()
   local pair = pairs_[math.random(#pairs_)]
   return get("/fhir/Observation?patient=" .. pair[1] .. "&code=" .. LOINC .. pair[2]
      .. "&_sort=-date&_include=Observation%3Aperformer&_include=Observation%3Aencounter")
end

local function chain()
   local pair = pairs_[math.random(#pairs_)]
   local _, mrn = random_patient()
   return get("/fhir/Observation?patient.identifier=" .. MRN_SYSTEM .. mrn .. "&code="
      .. LOINC .. pair[2])
end

local function history()
   return get("/fhir/Patient/" .. (random_patient()) .. "/_history")
end

local function everything()
   return get("/fhir/Patient/" .. (random_patient()) .. "/$everything")
end

local function observation(id, patient, value)
   local id_part = id and ('"id":"' .. id .. '",') or ""
   return '{"resourceType":"Observation",' .. id_part .. '"status":"final",'
      .. '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/'
      .. 'observation-category","code":"vital-signs"}]}],'
      .. '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4",'
      .. '"display":"Heart rate"}]},"subject":{"reference":"Patient/' .. patient .. '"},'
      .. '"effectiveDateTime":"2025-0' .. math.random(1, 9) .. '-1' .. math.random(0, 9)
      .. 'T10:00:00Z","valueQuantity":{"value":' .. value .. ',"unit":"/min",'
      .. '"system":"http://unitsofmeasure.org","code":"/min"}}'
end

local function take(queue)
   if #queue == 0 then return nil end
   return table.remove(queue, 1)
end

local function crud()
   step = step + 1
   local slot = step % 10
   if slot == 4 then
      return send("POST", "/fhir/Observation", observation(nil, (random_patient()), 70))
   elseif slot == 5 then
      serial = serial + 1
      local id = prefix .. "-" .. serial
      stage[id] = "created"
      return send("PUT", "/fhir/Observation/" .. id, observation(id, (random_patient()), 71))
   elseif slot == 6 then
      local id = take(created)
      if id then
         stage[id] = "updated"
         return send("PUT", "/fhir/Observation/" .. id, observation(id, (random_patient()), 72))
      end
   elseif slot == 7 and #posted > 0 then
      return get("/fhir/Observation/" .. posted[math.random(#posted)])
   elseif slot == 8 then
      local id = take(updated)
      if id then
         stage[id] = nil
         return wrk.format("DELETE", "/fhir/Observation/" .. id, (function()
            local headers = {}
            for k, v in pairs(plain) do headers[k] = v end
            return headers
         end)())
      end
   end
   return read()
end

local function bundle()
   serial = serial + 1
   local patient_url = "urn:uuid:" .. string.format("%08x-0000-4000-8000-%012x", tid, serial)
   local entries = {
      '{"fullUrl":"' .. patient_url .. '","resource":{"resourceType":"Patient",'
      .. '"identifier":[{"system":"urn:bench:ingest","value":"' .. prefix .. "-" .. serial
      .. '"}],"name":[{"family":"Ingest","given":["Bench' .. serial .. '"]}],'
      .. '"gender":"female","birthDate":"1980-01-01"},'
      .. '"request":{"method":"POST","url":"Patient"}}'
   }
   for n = 1, 20 do
      local obs = observation(nil, "X", 60 + n):gsub('"Patient/X"', '"' .. patient_url .. '"')
      entries[#entries + 1] = '{"fullUrl":"urn:uuid:' .. string.format(
         "%08x-%04x-4000-8000-%012x", tid, n, serial) .. '","resource":' .. obs
         .. ',"request":{"method":"POST","url":"Observation"}}'
   end
   local body = '{"resourceType":"Bundle","type":"transaction","entry":['
      .. table.concat(entries, ",") .. "]}"
   return send("POST", "/fhir", body)
end

local MIX = {
   { 40, read }, { 20, search }, { 10, include }, { 10, chain }, { 10, history }, { 10, crud },
}

local function mix()
   local roll = math.random(100)
   for _, choice in ipairs(MIX) do
      roll = roll - choice[1]
      if roll <= 0 then return choice[2]() end
   end
   return read()
end

local MODES = {
   read = read, search = search, include = include, chain = chain, history = history,
   everything = everything, crud = crud, ingest = bundle, mix = mix,
}

function request()
   return MODES[mode]()
end

function on_response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   answered = answered + 1
   if max_answers > 0 and answered >= max_answers then wrk.thread:stop() end
   if status ~= 200 and status ~= 201 then return end
   local type_, id = body:match('^{"resourceType":"(%a+)","id":"([^"]+)"')
   if type_ ~= "Observation" or id == nil then return end
   local state = stage[id]
   if state == "created" then
      created[#created + 1] = id
   elseif state == "updated" then
      updated[#updated + 1] = id
   elseif status == 201 and #posted < 1000 then
      posted[#posted + 1] = id
   end
end

local function json_statuses(list)
   local merged = {}
   for _, thread in ipairs(list) do
      local counts = thread:get("statuses")
      if counts then
         for status, n in pairs(counts) do merged[status] = (merged[status] or 0) + n end
      end
   end
   local parts = {}
   for status, n in pairs(merged) do parts[#parts + 1] = string.format('"%d":%d', status, n) end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":%s}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, json_statuses(threads)))
end
