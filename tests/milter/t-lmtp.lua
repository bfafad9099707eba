-- t-lmtp: recipients routed by lmtp(8) to btprelay-lmtp are checked by the socket's name
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>")
-- lmtp:unix:private/btprelay-lmtp-MAIL_MISSING: the destination MAIL_MISSING
expect_rcpt(conn, "reply", "x@corp.example", "lmtp", "unix:private/btprelay-lmtp-MAIL_MISSING")
expect_rcpt(conn, "continue", "a@corp.example", "lmtp", "unix:private/btprelay-lmtp-MAIL_OK")
-- another LMTP server (Dovecot): not ours, even though the destination would not exist
expect_rcpt(conn, "continue", "b@corp.example", "lmtp", "unix:private/dovecot-lmtp")
eom(conn)
mt.disconnect(conn)
