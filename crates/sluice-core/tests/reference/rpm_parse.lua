-- Reference oracle for tests/version_reference.rs: how rpm 4.18 itself splits a version, run by
--   SLUICE_VERSIONS=in SLUICE_PARSED=out rpm --eval '%{lua: dofile("rpm_parse.lua")}'
-- Reads one version a line and writes one line per version: "REFUSED" when rpm.ver() gives no
-- version (rpm's parser refuses only the empty text), else "OK<TAB>e<TAB>v<TAB>r" with each field
-- as rpm.ver() has it: "-" when rpm found none, "=" followed by the text when it did.
local input = assert(os.getenv("SLUICE_VERSIONS"), "SLUICE_VERSIONS not set")
local output = assert(os.getenv("SLUICE_PARSED"), "SLUICE_PARSED not set")
local out = assert(io.open(output, "w"))
local function field(value)
  if value == nil then
    return "-"
  end
  return "=" .. value
end
for line in io.lines(input) do
  local ok, ver = pcall(rpm.ver, line)
  if ok and ver ~= nil then
    out:write("OK\t", field(ver.e), "\t", field(ver.v), "\t", field(ver.r), "\n")
  else
    out:write("REFUSED\n")
  end
end
out:close()
