-- t-actions: milter_on_not_found = accept, milter_on_unusable = reject, another transport name
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
expect_rcpt(conn, "continue", "a@corp.example", "relay", "MAIL_MISSING")
expect_rcpt(conn, "reply", "b@corp.example", "relay", "MAIL_HTTP")
-- "btprelay" is now just another transport
expect_rcpt(conn, "continue", "c@corp.example", "btprelay", "MAIL_HTTP")
eom(conn)
mt.disconnect(conn)
