PUSHDIVERT(-1)
dnl
dnl btprelay - sendmail mailer for btprelay-transport(8): delivers to the SMTP
dnl relay of a SAP BTP MAIL destination (through the Connectivity proxy for
dnl OnPremise destinations).
dnl
dnl Install: copy (or link) this file to sendmail's cf/mailer/ directory
dnl (Debian: /usr/share/sendmail/cf/mailer/btprelay.m4) and add, after every
dnl FEATURE() line of sendmail.mc,
dnl	MAILER(`btprelay')
dnl Or, without touching cf/mailer/, at the end of sendmail.mc:
dnl	MAILER_DEFINITIONS
dnl	include(`/PATH/TO/btprelay.m4')
dnl Route a domain to a destination with FEATURE(`mailertable') and the line
dnl	corp.example	btprelay:MAIL_ONPREM
dnl The host part after "btprelay:" is the destination name ($h), passed as
dnl it is written (F=h: sendmail would otherwise lower-case it).
dnl See README beside this file and btprelay-transport(8), section SENDMAIL.
dnl
dnl Settings, each with define(`NAME', `value') before MAILER(`btprelay'):
dnl   BTPRELAY_MAILER_PATH   the program (/usr/libexec/btprelay/btprelay-transport)
dnl   BTPRELAY_MAILER_ARGS   its argument vector, $i the queue id, $g the
dnl                          envelope sender, $h the destination, $u a recipient
dnl                          (repeated per recipient with F=m); add "-c FILE"
dnl                          for another configuration file
dnl   BTPRELAY_MAILER_USER   U=: the user the transport runs as, with its
dnl                          primary group (btprelay), or uid:gid; never root
dnl   BTPRELAY_MAILER_FLAGS  flags added to DFMhmnu; or use
dnl                          MODIFY_MAILER_FLAGS(`BTPRELAY', `+flags' or `-flags')
dnl   BTPRELAY_MAILER_WAIT   W=: how long sendmail waits for the transport
dnl                          (15m). It must stay above delivery_deadline of
dnl                          btprelay.conf (600 s by default): the transport then
dnl                          always ends first, with its own 4.x.x and exit 75.
dnl   BTPRELAY_MAILER_MAX    M=: largest message in bytes (no limit)
dnl   BTPRELAY_MAILER_QGRP   Q=: a queue group
dnl
dnl Flags: D, F, M add Date:, From:, Message-Id: when missing (as the smtp
dnl mailers do); h keeps the destination name's case in $h; m one run for all
dnl recipients of the same destination ($u repeated); n no "From " line;
dnl u keeps the case of localparts.  Not set on purpose: X (the transport
dnl dot-stuffs itself), l (not final delivery), 7 (8-bit bodies pass as they
dnl are), 9 (no rewriting of MIME bodies: a relay must not break DKIM
dnl signatures), q (252 to VRFY: only the relay knows its users), e (deliver at
dnl once, not only in queue runs), S (U= alone sets the real and effective ids),
dnl P (no Return-Path: header: the relay's final delivery adds it).
dnl
dnl T=DNS/RFC822/X-Unix: the transport's exit status is a sysexits(3) code.
dnl sendmail queues on 75 (EX_TEMPFAIL) and bounces on 69; the transport's
dnl output line, which starts with the enhanced status code, goes into the
dnl transcript of the bounce.
dnl

ifdef(`BTPRELAY_MAILER_PATH',,
	`define(`BTPRELAY_MAILER_PATH', `/usr/libexec/btprelay/btprelay-transport')')
_DEFIFNOT(`BTPRELAY_MAILER_FLAGS', `')
ifdef(`BTPRELAY_MAILER_ARGS',,
	`define(`BTPRELAY_MAILER_ARGS', `btprelay-transport -q $i -f $g -d $h -- $u')')
ifdef(`BTPRELAY_MAILER_USER',,
	`define(`BTPRELAY_MAILER_USER', `btprelay')')
ifdef(`BTPRELAY_MAILER_WAIT',,
	`define(`BTPRELAY_MAILER_WAIT', `15m')')
define(`_BTPRELAY_QGRP', `ifelse(defn(`BTPRELAY_MAILER_QGRP'),`',`', ` Q=BTPRELAY_MAILER_QGRP,')')dnl

POPDIVERT

##################################################
###   btprelay Mailer specification (SAP BTP)  ###
##################################################

VERSIONID(`btprelay 0.1.0')

Mbtprelay,	P=BTPRELAY_MAILER_PATH, F=_MODMF_(CONCAT(`DFMhmnu', BTPRELAY_MAILER_FLAGS), `BTPRELAY'), S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP,
		ifdef(`BTPRELAY_MAILER_MAX', `M=BTPRELAY_MAILER_MAX, ')T=DNS/RFC822/X-Unix, U=BTPRELAY_MAILER_USER, W=BTPRELAY_MAILER_WAIT,_BTPRELAY_QGRP
		A=BTPRELAY_MAILER_ARGS
