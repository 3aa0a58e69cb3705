print "Python 2 syntax: bandit cannot parse this file"
