-- t-outage: the Destination Service fails (BTP emulator faults)
dofile(srcdir .. "/tests/milter/lib.lua")
emu("POST", "/faults/clear")
local conn = start()
mail(conn, "<app@example.com>", "QID1")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_ONPREM", "QID1")
eom(conn)

-- the entry expired (milter_cache_ttl = 2) and the service answers 500: served anyway
mt.sleep(2.5)
emu("POST", "/faults", '{"destination":"http500"}')
mail(conn, "<app@example.com>", "QID2")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_ONPREM", "QID2")
-- never seen, and the service hangs: tempfail once milter_lookup_timeout is over
emu("POST", "/faults", '{"destination":"timeout"}')
expect_rcpt(conn, "reply", "b@internet.example", "btprelay", "MAIL_INTERNET", "QID2")
-- never seen, and the service refuses connections
emu("POST", "/faults", '{"destination":"refuse"}')
expect_rcpt(conn, "reply", "c@noloc.example", "btprelay", "MAIL_NOLOC", "QID2")
eom(conn)
mt.disconnect(conn)
emu("POST", "/faults/clear")
