-- t-notfound: a recipient routed to a destination that does not exist is rejected
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
expect_rcpt(conn, "reply", "x@corp.example", "btprelay", "MAIL_MISSING")
-- negative cache: same answer, no second lookup
expect_rcpt(conn, "reply", "y@corp.example", "btprelay", "MAIL_MISSING")
-- the rest of the message is not affected
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK")
eom(conn)
mt.disconnect(conn)
