"""Feed downloads in each supported format, as their publishers serve them."""

from __future__ import annotations

import json

URLHAUS = b"""################################################################
# abuse.ch URLhaus Database Dump (CSV - recent URLs only)        #
################################################################
#
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"3038001","2024-05-01 10:00:01","http://evil.example/bins/x86","online","2024-05-01 10:00:01","malware_download","elf,mirai","https://urlhaus.abuse.ch/url/3038001/","r1"
"3038002","2024-05-01 10:00:02","https://Phish.Example:443/login?a=1","offline","","phishing","","https://urlhaus.abuse.ch/url/3038002/","r2"
"""


OPENPHISH = b"https://login-bank.example/verify\nhttp://paypa1.example/signin/\n"


PHISHTANK_CSV = (b"phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target\n"
                 b'1,https://steal.example/a,http://www.phishtank.com/phish_detail.php?phish_id=1,'
                 b'2024-05-01T00:00:00+00:00,yes,2024-05-01T00:10:00+00:00,yes,Other\n'
                 b'2,"http://steal.example/b?x=1,2",http://www.phishtank.com/phish_detail.php?phish_id=2,'
                 b'2024-05-01T00:00:00+00:00,yes,2024-05-01T00:10:00+00:00,yes,Other\n')


PHISHTANK_JSON = json.dumps([{"phish_id": 1, "url": "https://steal.example/a"},
                             {"phish_id": 2, "url": "http://steal.example/b"}]).encode()


SHA = "a" * 64


THREATFOX = json.dumps({
    "1": [{"ioc_value": "c2.example", "ioc_type": "domain", "threat_type": "botnet_cc"}],
    "2": [{"ioc_value": "https://drop.example/p.exe", "ioc_type": "url", "threat_type": "payload_delivery"}],
    "3": [{"ioc_value": "203.0.113.7:443", "ioc_type": "ip:port", "threat_type": "botnet_cc"}],
    "4": [{"ioc_value": SHA.upper(), "ioc_type": "sha256_hash", "threat_type": "payload"}],
    "5": [{"ioc_value": "d41d8cd98f00b204e9800998ecf8427e", "ioc_type": "md5_hash", "threat_type": "payload"}],
}).encode()


HOSTS = b"127.0.0.1 localhost\n::1 ip6-localhost\n0.0.0.0 ads.example tracker.example # trackers\n"

