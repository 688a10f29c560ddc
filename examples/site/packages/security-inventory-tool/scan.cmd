@echo off
rem Runs the inventory scan against the catalog in this folder.
scanwrapper.exe %*
