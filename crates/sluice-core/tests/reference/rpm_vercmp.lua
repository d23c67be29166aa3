-- Reference oracle for tests/version_reference.rs, run once per batch by
--   SLUICE_PAIRS=in SLUICE_VERDICTS=out rpm --eval '%{lua: dofile("rpm_vercmp.lua")}'
-- Reads "a<TAB>b" lines and writes one verdict per line: rpm.vercmp(a, b) (-1, 0 or 1),
-- or E when rpm refuses one of the versions.
local input = assert(os.getenv("SLUICE_PAIRS"), "SLUICE_PAIRS not set")
local output = assert(os.getenv("SLUICE_VERDICTS"), "SLUICE_VERDICTS not set")
local out = assert(io.open(output, "w"))
for line in io.lines(input) do
  local a, b = line:match("^([^\t]*)\t([^\t]*)$")
  assert(a, "malformed pair line: " .. line)
  local ok, verdict = pcall(rpm.vercmp, a, b)
  if ok then
    out:write(tostring(verdict), "\n")
  else
    out:write("E\n")
  end
end
out:close()
