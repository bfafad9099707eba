-- t-notours: recipients of other transports are left alone
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
expect_rcpt(conn, "continue", "a@example.net", "smtp", "[mx.example.net]")
-- the host names a missing destination, but the mailer is not ours: no lookup
expect_rcpt(conn, "continue", "b@example.net", "local", "MAIL_MISSING")
-- an MTA that sends no routing macros
expect_rcpt(conn, "continue", "c@example.net", nil, nil)
eom(conn)
check(not mt.eom_check(conn, MT_HDRADD), "a header was added to mail not routed to btprelay")
mt.disconnect(conn)
