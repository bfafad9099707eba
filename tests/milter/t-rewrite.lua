-- t-rewrite: the envelope sender is rewritten only when the whole message goes to
-- destinations that agree on one sender, and never for a bounce
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
-- 1: rewritten (SMFIR_CHGFROM, seen as "cmd e" in the verbose output)
mail(conn, "<app@example.com>", "QID1")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK", "QID1")
eom(conn)
-- 2: a bounce keeps the null sender
mail(conn, "<>", "QID2")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK", "QID2")
eom(conn)
-- 3: one recipient goes elsewhere
mail(conn, "<app@example.com>", "QID3")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK", "QID3")
expect_rcpt(conn, "continue", "b@example.net", "smtp", "[mx.example.net]", "QID3")
eom(conn)
-- 4: two destinations with different senders
mail(conn, "<app@example.com>", "QID4")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK", "QID4")
expect_rcpt(conn, "continue", "b@corp2.example", "btprelay", "MAIL_OK2", "QID4")
eom(conn)
-- 5: a destination without a sender
mail(conn, "<app@example.com>", "QID5")
expect_rcpt(conn, "continue", "a@nofrom.example", "btprelay", "MAIL_NOFROM", "QID5")
eom(conn)
mt.disconnect(conn)
