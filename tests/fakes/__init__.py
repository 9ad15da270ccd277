"""Local fakes of the services kbbot talks to, served over real HTTP."""
