-- t-found: a recipient routed to an existing MAIL destination is accepted
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK")
-- the second one is answered from the cache
expect_rcpt(conn, "continue", "b@corp.example", "btprelay", "MAIL_OK")
eom(conn)
check(not mt.eom_check(conn, MT_HDRADD), "a header was added with milter_trace_header off")
mt.disconnect(conn)
