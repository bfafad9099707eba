-- t-unusable: destinations that exist but cannot carry mail are tempfailed
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
expect_rcpt(conn, "reply", "a@corp.example", "btprelay", "MAIL_HTTP")
expect_rcpt(conn, "reply", "b@corp.example", "btprelay", "MAIL_NOPORT")
eom(conn)
mt.disconnect(conn)
